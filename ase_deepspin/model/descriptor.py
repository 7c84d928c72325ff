"""Descriptors: the protocol the energy core calls, and the se_e2_a rows and nets they share.

A descriptor is an ``nn.Module`` (TorchScript-compatible) that the energy core
(:meth:`~ase_deepspin.model.DeepSpinModel.atomic_energies`) calls as

    features = descriptor(spins, atom_types, centers, neighbors, lattice, pseudo, real,
                          first, n_centres, members_of, twice_differentiable)

with ``spins`` [N, 3] μB, edges ``centers``/``neighbors`` [E] (the centres being atoms
``first .. first + n_centres - 1``), ``lattice`` [E, 3] Å (R_j + n·cell − R_i, strained if a
strain is applied), ``pseudo`` [E] (the neighbour is a pseudo-atom candidate), ``real`` [E]
(a real edge within rcut) and ``members_of[t]`` the local indices of the type-t centres. It
returns, per centre type t, features [H, n_t, n_features]: the core runs the fitting net of
type t on each of the H sets and averages (H = 2 is how a descriptor symmetrises, H = 1
otherwise). Besides, a descriptor has ``n_features``, ``block_names()``, ``edge_sets`` (the
edges statistics are taken over), ``env_mean``/``env_std`` buffers and ``radial_nets()``
with ``tables`` (compression). The implementations: :mod:`~ase_deepspin.model.pseudo_atom`
(DeepSPIN) and :mod:`~ase_deepspin.model.spin_invariant`.

The se_e2_a rows. For a centre i and neighbour j at vector r (Å), the environment row is

    d_ij = s(r) * (1, x, y, z) / (r + p) ** (1, 2, 2, 2)

with the smooth switch s(r) (1 below ``rcut_smth``, 0 beyond ``rcut``, a quintic polynomial in
between) and the protection distance p (``env_protection``, Å). Rows are standardised with
per-centre-type mean and standard deviation, ``(d - mean) / std``. Embedding nets G, one per
(centre type, neighbour block), map the standardised radial entry to ``M = neuron[-1]``
features; the descriptor of i is

    T_i = sum_j d_ij^T G(d_ij[0]) / N_c              (4 x M)
    D_i = T_i^T T_i[:, :axis_neuron]                 (M x axis_neuron)

where ``N_c = sum(sel)`` counts every neighbour slot, filled or not. As in DeePMD-kit, an empty
slot is not masked: after standardisation it is the row ``-mean/std`` of a neighbour beyond the
cutoff, so it contributes a constant per (centre type, block) times the number of empty slots.
"""


import math
from typing import List, Optional

import torch
from torch import nn

from . import fused
from .tabulation import EmbeddingTable


def smooth_switch(r: torch.Tensor, rcut_smth: float, rcut: float) -> torch.Tensor:
    """Switch s(r): 1 for r <= rcut_smth, 0 for r >= rcut, C2-continuous quintic in between."""
    u = ((r - rcut_smth) / (rcut - rcut_smth)).clamp(0.0, 1.0)
    return u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0


def environment_rows(vectors: torch.Tensor, rcut_smth: float, rcut: float, protection: float) -> torch.Tensor:
    """Unstandardised environment rows (s/r, s x/r², s y/r², s z/r²) of edge vectors.

    vectors: [E, 3] Å. Returns [E, 4] with units (1/Å, 1/Å, 1/Å, 1/Å).
    """
    r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)  # [E, 1]
    weight = smooth_switch(r, rcut_smth, rcut)
    inv = 1.0 / (r + protection)
    return torch.cat([weight * inv, weight * vectors * inv * inv], dim=-1)


class DenseLayer(nn.Module):
    """y = act(x W + b) [* timestep] [+ x or + (x, x)], DeePMD-kit's layer rule.

    The residual is added when the layer keeps its width (x) or doubles it (x concatenated with
    itself); ``timestep`` is a trainable per-neuron scale of the update (``resnet_dt``).
    """

    def __init__(self, n_in: int, n_out: int, *, activation: bool, resnet: bool, timestep: bool,
                 generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        std = 1.0 / math.sqrt(n_in + n_out)
        self.weight = nn.Parameter(torch.randn(n_in, n_out, generator=generator, dtype=dtype) * std)
        self.bias = nn.Parameter(torch.randn(n_out, generator=generator, dtype=dtype))
        self.timestep = (
            nn.Parameter(0.1 + 0.001 * torch.randn(n_out, generator=generator, dtype=dtype)) if timestep else None
        )
        self.activation = activation
        self.residual = resnet and n_out in (n_in, 2 * n_in)
        self.doubles = n_out == 2 * n_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addmm(self.bias, x, self.weight)
        if self.activation:
            y = torch.tanh(y)
        if self.timestep is not None:
            y = y * self.timestep
        if self.residual:
            y = y + (torch.cat([x, x], dim=-1) if self.doubles else x)
        return y


def mlp(widths: list[int], *, timestep: bool, linear_output: bool, generator, dtype) -> nn.Sequential:
    """Residual tanh MLP through ``widths``; with ``linear_output`` the last layer is affine."""
    layers = []
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = k == len(widths) - 2
        if last and linear_output:
            layers.append(DenseLayer(n_in, n_out, activation=False, resnet=False, timestep=False,
                                     generator=generator, dtype=dtype))
        else:
            layers.append(DenseLayer(n_in, n_out, activation=True, resnet=True, timestep=timestep,
                                     generator=generator, dtype=dtype))
    return nn.Sequential(*layers)


def contract(rows: torch.Tensor, g: torch.Tensor, rank: torch.Tensor, n_rank: int) -> torch.Tensor:
    """Σ_j rows_jᵀ g_j per centre [n_rank, 4, M] for rows [E, 4] and per-edge features g [E, M].

    Four scatters of [E, M] (not one of an [E, 4, M] product): measured faster in backward on CPU.
    """
    columns: List[torch.Tensor] = []
    for k in range(4):
        columns.append(g.new_zeros(n_rank, g.shape[1]).index_add(0, rank, rows[:, k:k + 1] * g))
    return torch.stack(columns, dim=1)


def overflow_message(count: int, block: str, rcut: float, sel: int) -> str:
    """The error for a centre with more neighbours in a block than ``sel`` allows (TorchScript-compatible)."""
    return ("a centre has " + str(count) + " neighbours of block '" + block + "' within rcut=" + str(rcut)
            + " Å but sel allows " + str(sel) + "; the model cannot describe this environment (DeePMD-kit "
            "would silently drop the farthest). Atoms may be too close.")


class RadialEmbeddings(nn.Module):
    """The se_e2_a part every descriptor here shares: embedding nets G_p, one per (centre type, block),
    over standardised rows, their optional spline tables, and the statistics of the rows.

    Buffers: ``env_mean``/``env_std`` [T, 4] per centre type; ``sel`` [n_blocks].
    Nets: ``embedding[t * n_blocks + b]``; with compression ``tables`` in the same order.
    """

    def __init__(self, config, n_blocks: int, sel: List[int], names: List[str], generator: torch.Generator,
                 dtype: torch.dtype):
        super().__init__()
        n = config.n_types
        self.n_types = n
        self.n_blocks = n_blocks
        self.rcut = float(config.rcut)
        self.rcut_smth = float(config.rcut_smth)
        self.env_protection = float(config.env_protection)
        self.width = int(config.neuron[-1])
        self.axis_neuron = int(config.axis_neuron)
        self.n_slots = int(sum(sel))
        self.names: List[str] = list(names)
        self.embedding = nn.ModuleList(
            mlp([1, *config.neuron], timestep=config.embedding_resnet_dt, linear_output=False, generator=generator,
                dtype=dtype)
            for _ in range(n * n_blocks)
        )
        self.register_buffer("env_mean", torch.zeros(n, 4, dtype=dtype))
        self.register_buffer("env_std", torch.ones(n, 4, dtype=dtype))
        self.register_buffer("sel", torch.tensor(sel, dtype=torch.int64))
        self.tables = None
        if config.compression is not None:
            knots = config.compression["n_knots"]
            if len(knots) != n * n_blocks:
                raise ValueError(f"compression.n_knots needs {n * n_blocks} counts (one per embedding net), "
                                 f"got {len(knots)}")
            self.tables = nn.ModuleList(EmbeddingTable(int(k), self.width, dtype) for k in knots)

    def block_names(self) -> List[str]:
        """Names of the neighbour blocks."""
        return self.names

    def standardised_rows(self, vectors: torch.Tensor, t: int) -> torch.Tensor:
        """(d − mean)/std [E, 4] of edge vectors [E, 3] (Å) around type-t centres."""
        return (environment_rows(vectors, self.rcut_smth, self.rcut, self.env_protection) - self.env_mean[t]) \
            / self.env_std[t]

    def block_contraction(self, p: int, vectors: torch.Tensor, rank: torch.Tensor, n_rank: int,
                     twice_differentiable: bool) -> torch.Tensor:
        """Σ_j d_jᵀ G_p(d_j[0]) [n_rank, 4, M] over the edges of embedding net ``p`` (vectors [E_p, 3], Å).

        ``rank`` [E_p] (ascending) numbers each edge's centre among the ``n_rank`` centres of the net's
        centre type. A tabulated net handles the edges inside its table and the net the rest (exact); on
        CPU outside TorchScript through the fused kernels of :mod:`~ase_deepspin.model.fused`, whose
        first-derivative rules are used unless ``twice_differentiable``.
        """
        t = p // self.n_blocks
        part: Optional[torch.Tensor] = None
        tables = self.tables
        if tables is not None and not torch.jit.is_scripting() and self._fused_usable(vectors, twice_differentiable):
            fused_part, outside = self._fused_contraction(p, vectors, rank, n_rank)
            if not bool(outside.any()):
                return fused_part
            part = fused_part
            vectors, rank = vectors[outside], rank[outside]  # closer than the table's min_distance
        rows = self.standardised_rows(vectors, t)
        if tables is not None and part is None:
            for q, table in enumerate(tables):
                if q == p:
                    inside = table.inside(rows[:, 0])
                    if torch.jit.is_scripting() or twice_differentiable:
                        part = table.spline_contraction(rows[inside], rank[inside], n_rank)
                    else:
                        part = self._table_contraction(q, rows[inside], rank[inside], n_rank)
                    rows, rank = rows[~inside], rank[~inside]  # closer than the table's min_distance
        contraction = rows.new_zeros(n_rank, 4, self.width)
        if rows.shape[0] > 0:
            for q, net in enumerate(self.embedding):
                if q == p:
                    contraction = contract(rows, net(rows[:, :1]), rank, n_rank)
        return contraction if part is None else contraction + part

    def radial(self, p: int, x: torch.Tensor) -> torch.Tensor:
        """G_p(x) [E, M] at standardised radial entries x [E] (its table where it covers x)."""
        g = x.new_zeros(x.shape[0], self.width)
        rest = torch.ones_like(x, dtype=torch.bool)
        tables = self.tables
        if tables is not None:
            for q, table in enumerate(tables):
                if q == p:
                    rest = ~table.inside(x)
                    inside = (~rest).nonzero().squeeze(-1)
                    g = g.index_put((inside,), table.evaluate(x.index_select(0, inside)))
        if bool(rest.any()):
            outside = rest.nonzero().squeeze(-1)
            for q, net in enumerate(self.embedding):
                if q == p:
                    g = g.index_put((outside,), net(x.index_select(0, outside).unsqueeze(-1)))
        return g

    @torch.jit.unused
    def _fused_usable(self, vectors: torch.Tensor, twice_differentiable: bool) -> bool:
        return fused.usable(vectors, twice_differentiable)

    @torch.jit.unused
    def fused_inputs(self, p: int, rank: torch.Tensor, n_rank: int):
        """(table constants, per-centre edge starts [n_rank + 1]) of net ``p``'s table for the fused kernels."""
        t = p // self.n_blocks
        constants = fused.table_constants(self.tables[p], self.env_mean[t], self.env_std[t],
                                          (self.rcut_smth, self.rcut, self.env_protection))
        return constants, torch.searchsorted(rank, torch.arange(n_rank + 1, device=rank.device))

    @torch.jit.unused
    def _fused_contraction(self, p: int, vectors: torch.Tensor, rank: torch.Tensor, n_rank: int):
        constants, start = self.fused_inputs(p, rank, n_rank)
        return fused.FusedContraction.apply(vectors, start, self.tables[p].coefficients, constants)

    @torch.jit.unused
    def _table_contraction(self, p: int, rows: torch.Tensor, rank: torch.Tensor, n_rank: int) -> torch.Tensor:
        return self.tables[p].contraction(rows, rank, n_rank, False)

    def empty_slot_rows(self, t: int) -> torch.Tensor:
        """Per block, the contraction row0ᵀ G(row0[0]) [n_blocks, 4 M] of one empty slot of a type-t centre."""
        row0 = -self.env_mean[t] / self.env_std[t]  # an empty slot is a neighbour beyond the cutoff
        rows: List[torch.Tensor] = []
        for p, net in enumerate(self.embedding):  # (TorchScript indexes a ModuleList by constants only)
            if t * self.n_blocks <= p < (t + 1) * self.n_blocks:
                rows.append((row0.unsqueeze(-1) * net(row0[:1].unsqueeze(0))).reshape(-1))
        return torch.stack(rows)

    def sorted_edges(self, idx: torch.Tensor, net_of: torch.Tensor, centers: torch.Tensor, first: int,
                     n_centres: int):
        """Edges ``idx`` sorted by (net, centre), their local centres, and each net's end in the order.

        Every net's edges then form a contiguous slice ascending in centre (as the fused kernels need).
        """
        c = centers.index_select(0, idx) - first
        net = net_of.index_select(0, idx)
        order = torch.argsort(net * n_centres + c, stable=True)
        bounds: List[int] = torch.bincount(net, minlength=self.n_types * self.n_blocks).cumsum(0).tolist()
        return idx.index_select(0, order), c.index_select(0, order), bounds

    @torch.jit.unused
    def radial_nets(self) -> list:
        """(net, centre type, label) of every embedding net, in table order (for compression)."""
        return [(net, p // self.n_blocks, f"{self.names[p // self.n_blocks]} <- {self.names[p % self.n_blocks]}")
                for p, net in enumerate(self.embedding)]

    @torch.no_grad()
    @torch.jit.unused
    def set_statistics(self, frames) -> None:
        """Set ``env_mean``/``env_std`` as DeePMD-kit does for se_e2_a.

        ``frames`` yields dicts with ``atom_types`` [N] and ``edge_sets`` (a list of (centres [E],
        vectors [E, 3] Å), one per feature set, see ``edge_sets``). Per centre type, every one of the
        ``sum(sel)`` slots counts, empty ones as zero rows; the angular mean is fixed at 0 and the three
        angular components share one standard deviation; deviations below 0.01 are raised to 0.01 and
        types never seen as centres get mean 0, std 0.1.
        """
        n = self.n_types
        sums = torch.zeros(n, 5, dtype=torch.float64)  # centres, sum r, sum r^2, sum a, sum a^2
        for f in frames:
            types = f["atom_types"]
            sums[:, 0] += torch.bincount(types, minlength=n).double()
            weight = 1.0 / len(f["edge_sets"])  # a symmetric model sees each set equally often
            for centres, vectors in f["edge_sets"]:
                ct = types[centres]
                env = environment_rows(vectors, self.rcut_smth, self.rcut, self.env_protection).double()
                sums[:, 1].index_add_(0, ct, weight * env[:, 0])
                sums[:, 2].index_add_(0, ct, weight * env[:, 0] ** 2)
                sums[:, 3].index_add_(0, ct, weight * env[:, 1:].sum(-1))
                sums[:, 4].index_add_(0, ct, weight * (env[:, 1:] ** 2).sum(-1))
        mean = torch.zeros(n, 4, dtype=torch.float64)
        std = torch.full((n, 4), 0.1, dtype=torch.float64)
        for t in range(n):
            count = sums[t, 0] * self.n_slots
            if count == 0:
                continue
            mean[t, 0] = sums[t, 1] / count
            std[t, 0] = (sums[t, 2] / count - mean[t, 0] ** 2).clamp(min=0).sqrt()
            std[t, 1:] = (sums[t, 4] / (3 * count) - (sums[t, 3] / (3 * count)) ** 2).clamp(min=0).sqrt()
        self.env_mean.copy_(mean)
        self.env_std.copy_(std.clamp(min=1e-2))
