"""DeepSPIN energy model: se_e2_a descriptor over real and spin pseudo-atoms, per-type fitting.

Symbols and variables
---------------------
======================  =====================  ===========================================
symbol                  variable               meaning (units)
======================  =====================  ===========================================
R_i                     ``positions``          real-atom positions [N, 3] (Å)
S_i                     ``spins``              magnetic moments [N, 3] (μB), 0 if non-magnetic
eta_t                   ``virtual_scale``      pseudo-atom distance per moment, per type (Å/μB)
R_i + eta S_i           pseudo-atom position   neighbour of type ``t + n_types`` (never a centre)
E = sum_i E_i           ``energy``             per frame (eV); E_i atomic energies of real atoms
F = -dE/dR              ``forces``             eV/Å
omega = -dE/dS          ``torques``            full gradient, eV/μB (zero on non-magnetic atoms)
W = -dE/d(strain)       ``virial``             per frame [B, 3, 3] (eV), spins held fixed
======================  =====================  ===========================================

Neighbour blocks follow DeePMD-kit's spin models: the type map is doubled (real types, then one
pseudo-type per real type; those of non-magnetic types are unused placeholders) and ``sel`` has
one entry per doubled type. The model is a pure ``torch.nn.Module``: tensors in, tensors out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import fused
from .baseline import SpinBaseline, check_form
from .descriptor import environment_rows, mlp
from .tabulation import EmbeddingTable
from .zbl import ZBLWall, check_short_range

FORMAT_VERSION = 4
# version 2 added the optional ``compression`` and ``embedding_resnet_dt``, version 3 ``spin_baseline``,
# version 4 ``time_reversal`` (files of earlier versions have none) and ``short_range``
READABLE_VERSIONS = (1, 2, 3, 4)


@dataclass
class ModelConfig:
    """Hyper-parameters of a DeepSPIN model (names as in DeePMD-kit's se_e2_a spin input).

    ``sel`` may be one int (for every doubled type), one int per real type (repeated for the
    pseudo-types) or one int per doubled type. ``resnet_dt`` is the fitting net's (DeePMD-kit
    ``fitting_net.resnet_dt``), ``embedding_resnet_dt`` the embedding nets' (``descriptor.resnet_dt``).
    ``spin_baseline`` (``{"n_basis": K, "onsite_order": P, "form": "landau" | "deviation"}``, optionally
    ``"biquadratic": true``) adds the
    Heisenberg–Landau term of :mod:`ase_deepspin.model.baseline` to the network energy (not a DeePMD-kit
    feature; without a form, "deviation", the rigid-moment form of files written before forms existed).
    ``time_reversal`` makes the network even in the spins, E_net = ½[E(R, S) + E(R, −S)], as
    physics without an external field is (exactly, to round-off; not a DeePMD-kit feature).
    ``short_range`` (``{"type": "zbl", "charges": [T], "r_inner": [[T×T]], "r_outer": [[T×T]]}``,
    Å) adds the switched ZBL wall of :mod:`ase_deepspin.model.zbl`. ``data_ranges`` records what
    the training frames held (see :mod:`ase_deepspin.model.ranges`); calculators warn beyond it.
    """

    type_map: list[str]
    virtual_scale: list[float]
    rcut: float = 5.6
    rcut_smth: float = 5.4
    sel: list[int] | int = 60
    neuron: list[int] = field(default_factory=lambda: [25, 50, 100])
    axis_neuron: int = 16
    fitting_neuron: list[int] = field(default_factory=lambda: [240, 240, 240])
    resnet_dt: bool = True
    embedding_resnet_dt: bool = False
    env_protection: float = 0.01
    seed: int = 1
    compression: dict | None = None  # tabulated embedding nets: tolerance, min_distance, n_knots per net
    spin_baseline: dict | None = None  # Heisenberg–Landau baseline: n_basis, onsite_order, form
    time_reversal: bool = True  # network energy symmetrised under S -> -S
    short_range: dict | None = None  # ZBL wall: nuclear charges, r_inner, r_outer per type pair (Å)
    data_ranges: dict | None = None  # training data: moment range per type (μB), shortest distance per pair (Å),
    # first-shell spin alignment range per type (model.ranges.spin_alignment)

    def __post_init__(self):
        n = len(self.type_map)
        if n == 0 or len(set(self.type_map)) != n:
            raise ValueError(f"type_map must list distinct elements, got {self.type_map}")
        if len(self.virtual_scale) != n:
            raise ValueError(f"virtual_scale needs one value per type ({n}), got {self.virtual_scale}")
        if any(v < 0 for v in self.virtual_scale):
            raise ValueError(f"virtual_scale must be >= 0 (Å/μB), got {self.virtual_scale}")
        if not 0.0 < self.rcut_smth < self.rcut:
            raise ValueError(f"need 0 < rcut_smth < rcut, got rcut_smth={self.rcut_smth}, rcut={self.rcut}")
        sel = [self.sel] * (2 * n) if isinstance(self.sel, int) else list(self.sel)
        if len(sel) == n:
            sel = sel + sel
        if len(sel) != 2 * n or any(int(s) < 0 for s in sel):
            raise ValueError(f"sel needs 1, {n} or {2 * n} non-negative ints, got {self.sel}")
        self.sel = [int(s) for s in sel]
        if not 0 < self.axis_neuron <= self.neuron[-1]:
            raise ValueError(f"axis_neuron must be in 1..{self.neuron[-1]}, got {self.axis_neuron}")
        self.type_map = list(self.type_map)
        self.virtual_scale = [float(v) for v in self.virtual_scale]
        self.neuron = [int(v) for v in self.neuron]
        self.fitting_neuron = [int(v) for v in self.fitting_neuron]
        if self.compression is not None:
            knots = self.compression.get("n_knots")
            if not isinstance(knots, list) or len(knots) != 2 * n * n or any(int(k) < 2 for k in knots):
                raise ValueError(f"compression.n_knots needs {2 * n * n} counts >= 2, got {knots}")
        if self.spin_baseline is not None:
            unknown = set(self.spin_baseline) - {"n_basis", "onsite_order", "form", "biquadratic"}
            if unknown:
                raise ValueError(f"unknown spin_baseline keys {sorted(unknown)} "
                                 "(known: n_basis, onsite_order, form, biquadratic)")
            biquadratic = self.spin_baseline.get("biquadratic", False)
            if not isinstance(biquadratic, bool):
                raise ValueError(f"spin_baseline biquadratic must be true or false, got {biquadratic!r}")
            self.spin_baseline = {"n_basis": int(self.spin_baseline.get("n_basis", 8)),
                                  "onsite_order": int(self.spin_baseline.get("onsite_order", 4)),
                                  "form": check_form(self.spin_baseline.get("form", "deviation")),
                                  # only when on, so files written before the option keep their config
                                  **({"biquadratic": True} if biquadratic else {})}
        if not isinstance(self.time_reversal, bool):
            raise ValueError(f"time_reversal must be true or false, got {self.time_reversal!r}")
        if self.short_range is not None:
            self.short_range = check_short_range(self.short_range, n, self.rcut)
        if self.data_ranges is not None and (not {"moment", "shortest"} <= set(self.data_ranges)
                                             or not set(self.data_ranges) <= {"moment", "shortest", "alignment"}
                                             or any(len(v) != n for v in self.data_ranges.values())):
            raise ValueError(f"data_ranges needs 'moment' (one [lo, hi] or null per type) and 'shortest' "
                             f"({n}×{n}), and may hold 'alignment' (one [lo, hi] or null per type), got "
                             f"{self.data_ranges}")

    @property
    def n_types(self) -> int:
        return len(self.type_map)

    @property
    def magnetic(self) -> list[bool]:
        return [v > 0 for v in self.virtual_scale]

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class DeepSpinModel(nn.Module):
    """DeepSPIN model (Yang et al., Phys. Rev. B 110, 064427 (2024)) on an edge list.

    Build with ``DeepSpinModel(ModelConfig(...))``; evaluate with :meth:`forward` on tensors
    (the ASE adaptor is :class:`ase_deepspin.DeepSpinCalculator`). Parameters are float64 unless
    ``dtype`` says otherwise; the environment statistics (``env_mean``, ``env_std``, per centre
    type) and the per-type energy bias (``energy_bias``, eV) are buffers saved with the weights.
    """

    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.config = config
        self.provenance = {}  # what the model was made from, kept by model files (see model.io)
        n = config.n_types
        gen = torch.Generator().manual_seed(config.seed)
        self.embedding = nn.ModuleList(
            mlp([1, *config.neuron], timestep=config.embedding_resnet_dt, linear_output=False, generator=gen,
                dtype=dtype)
            for _ in range(n * 2 * n)
        )
        n_desc = config.neuron[-1] * config.axis_neuron
        self.fitting = nn.ModuleList(
            mlp([n_desc, *config.fitting_neuron, 1], timestep=config.resnet_dt, linear_output=True,
                generator=gen, dtype=dtype)
            for _ in range(n)
        )
        self.register_buffer("env_mean", torch.zeros(n, 4, dtype=dtype))
        self.register_buffer("env_std", torch.ones(n, 4, dtype=dtype))
        self.register_buffer("energy_bias", torch.zeros(n, dtype=dtype))
        self.register_buffer("virtual_scale", torch.tensor(config.virtual_scale, dtype=dtype))
        self.register_buffer("sel", torch.tensor(config.sel, dtype=torch.int64))
        self.tables = None
        if config.compression is not None:
            self.tables = nn.ModuleList(EmbeddingTable(int(k), config.neuron[-1], dtype)
                                        for k in config.compression["n_knots"])
        self.baseline = None
        if config.spin_baseline is not None:
            self.baseline = SpinBaseline(n, config.magnetic, config.rcut, config.rcut_smth,
                                         config.spin_baseline["n_basis"], config.spin_baseline["onsite_order"], dtype,
                                         config.spin_baseline["form"], config.spin_baseline.get("biquadratic", False))
        self.wall = None
        if config.short_range is not None:
            wall = config.short_range
            self.wall = ZBLWall(wall["charges"], wall["r_inner"], wall["r_outer"], dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.env_mean.dtype

    @property
    def device(self) -> torch.device:
        return self.env_mean.device

    @property
    def n_slots(self) -> int:
        return int(sum(self.config.sel))

    # ------------------------------------------------------------------ descriptor
    def edge_vectors(self, positions, spins, atom_types, centers, neighbors, offsets, pseudo, strain=None,
                     edge_frames=None):
        """Edge vectors [E, 3] (Å) in the model dtype: R_j + n·cell − R_i, plus eta_j S_j for pseudo neighbours.

        The lattice part is formed in the dtype of ``positions`` and ``offsets`` (float64 from
        :mod:`ase_deepspin.system`) and cast afterwards: differences of large coordinates lose
        no digits, so float32 models are as accurate at 10⁴ Å as at the origin. ``strain``
        ([B, 3, 3], dimensionless, dtype of ``positions``) deforms the lattice part only: spins
        are not lengths, so pseudo-atom offsets are unstrained. (index_select rather than advanced
        indexing throughout: several times faster on CPU, and its backward is an index_add.)
        """
        lattice, shift = self.edge_parts(positions, spins, atom_types, centers, neighbors, offsets, pseudo, strain,
                                         edge_frames)
        return lattice + shift

    def edge_parts(self, positions, spins, atom_types, centers, neighbors, offsets, pseudo, strain=None,
                   edge_frames=None):
        """The two parts of :meth:`edge_vectors` [E, 3] (Å, model dtype): R_j + n·cell − R_i (strained) and
        eta_j S_j on pseudo edges (zero on real ones); a time-reversed pseudo-atom sits at their difference."""
        lattice = positions.index_select(0, neighbors) - positions.index_select(0, centers) + offsets.to(positions.dtype)
        if strain is not None and len(strain) == 1:
            lattice = lattice + lattice @ strain[0]
        elif strain is not None:
            lattice = lattice + torch.bmm(lattice.unsqueeze(1), strain.index_select(0, edge_frames)).squeeze(1)
        lattice = lattice.to(self.dtype)
        eta = self.virtual_scale.index_select(0, atom_types.index_select(0, neighbors)) * pseudo.to(self.dtype)
        return lattice, eta.unsqueeze(-1) * spins.to(self.dtype).index_select(0, neighbors)

    def spin_halves(self, lattice, shift) -> list:
        """Edge vectors the network sees: at S, and with time reversal also at −S (see :meth:`edge_parts`)."""
        return [lattice + shift, lattice - shift] if self.config.time_reversal else [lattice + shift]

    def slot_counts(self, center_local, blocks, n_centres, inside=None):
        """Filled neighbour slots per centre and block [n_centres, 2 n_types]; raises on overflow.

        ``inside`` (one bool mask [E] per half of a time-reversal-symmetric model) marks the edges
        within rcut in that half: the list holds pseudo-atoms within rcut for S or for −S, and one
        beyond rcut in a half is an empty slot there. Returns one count per half.
        """
        n_blocks = 2 * self.config.n_types
        slot = center_local * n_blocks + blocks
        filled = [torch.bincount(slot if mask is None else slot[mask], minlength=n_centres * n_blocks)
                  .view(n_centres, n_blocks) for mask in (inside or [None])]
        for counts in filled:
            over = counts > self.sel
            if bool(over.any()):
                c, b = (int(v) for v in over.nonzero()[0])
                names = self.block_names()
                raise ValueError(
                    f"a centre has {int(counts[c, b])} neighbours of block '{names[b]}' within rcut="
                    f"{self.config.rcut} Å but sel allows {int(self.sel[b])}; the model cannot describe "
                    "this environment (DeePMD-kit would silently drop the farthest). Atoms may be too close."
                )
        return filled

    def block_names(self) -> list[str]:
        return list(self.config.type_map) + [f"{t}_spin" for t in self.config.type_map]

    def block_moment(self, p: int, vectors, rank, n_rank: int, twice_differentiable: bool = True):
        """Σ_j d_jᵀ G_p(d_j[0]) [n_rank, 4, M] over the edges of embedding net ``p`` (vectors [E_p, 3], Å).

        ``rank`` [E_p] numbers each edge's centre among the ``n_rank`` centres of the net's centre
        type. A tabulated net handles the edges inside its table and the net itself the rest (exact):
        on CPU, with edges sorted by centre, by the fused kernels of :mod:`~ase_deepspin.model.fused`.
        ``twice_differentiable=False`` lets tables use their faster first-derivative rules.
        """
        cfg = self.config
        t = p // (2 * cfg.n_types)
        part = None
        if self.tables is not None and fused.usable(vectors, twice_differentiable) \
                and not bool((rank[1:] < rank[:-1]).any()):
            constants = fused.table_constants(self.tables[p], self.env_mean[t], self.env_std[t],
                                              (cfg.rcut_smth, cfg.rcut, cfg.env_protection))
            start = torch.searchsorted(rank, torch.arange(n_rank + 1, device=rank.device))
            part, outside = fused.FusedMoment.apply(vectors, start, self.tables[p].coefficients, constants)
            if not bool(outside.any()):
                return part
            vectors, rank = vectors[outside], rank[outside]  # closer than the table's min_distance
        rows = (environment_rows(vectors, cfg.rcut_smth, cfg.rcut, cfg.env_protection) - self.env_mean[t]) \
            / self.env_std[t]
        if self.tables is not None and part is None:
            table = self.tables[p]
            inside = table.inside(rows[:, 0])
            if bool(inside.all()):
                return table.moment(rows, rank, n_rank, twice_differentiable)
            part = table.moment(rows[inside], rank[inside], n_rank, twice_differentiable)
            rows, rank = rows[~inside], rank[~inside]  # closer than the table's min_distance
        g = self.embedding[p](rows[:, :1])  # [E_p, M]
        moment = torch.stack([g.new_zeros(n_rank, g.shape[1]).index_add(0, rank, rows[:, k : k + 1] * g)
                              for k in range(4)], dim=1)
        return moment if part is None else moment + part

    def empty_slot_rows(self, t: int):
        """Per block, the moment row0ᵀ G(row0[0]) [2 n_types, 4 M] of one empty slot of a type-t centre."""
        n_blocks = 2 * self.config.n_types
        row0 = -self.env_mean[t] / self.env_std[t]  # an empty slot is a neighbour beyond the cutoff
        return torch.stack([(row0.unsqueeze(-1) * self.embedding[t * n_blocks + b](row0[:1].unsqueeze(0))).reshape(-1)
                            for b in range(n_blocks)])

    @torch.no_grad()
    def set_environment_statistics(self, frames) -> None:
        """Set ``env_mean``/``env_std`` from frames, as DeePMD-kit does for se_e2_a.

        ``frames`` yields dicts of :meth:`forward` inputs. Per centre type, every one of the
        ``sum(sel)`` slots counts, empty ones as zero rows; the angular mean is fixed at 0 and the
        three angular components share one standard deviation; deviations below 0.01 are raised
        to 0.01 and types never seen as centres get mean 0, std 0.1.
        """
        cfg = self.config
        n = cfg.n_types
        sums = torch.zeros(n, 5, dtype=torch.float64)  # centres, sum r, sum r^2, sum a, sum a^2
        for f in frames:
            lattice, shift = self.edge_parts(f["positions"], f["spins"], f["atom_types"], f["centers"],
                                             f["neighbors"], f["offsets"], f["pseudo"])
            halves = self.spin_halves(lattice, shift)
            ct = f["atom_types"][f["centers"]]
            sums[:, 0] += torch.bincount(f["atom_types"], minlength=n).double()
            weight = 1.0 / len(halves)  # a symmetric model sees both halves equally often
            for vectors in halves:
                env = environment_rows(vectors, cfg.rcut_smth, cfg.rcut, cfg.env_protection).double()
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

    # ------------------------------------------------------------------ energy
    def atomic_energies(self, positions, spins, atom_types, centers, neighbors, offsets, pseudo,
                        first, n_centres, strain=None, atom_frames=None, twice_differentiable=True):
        """Atomic energies (eV) of centres ``first .. first + n_centres - 1`` from their edges.

        The se_e2_a descriptor (see :mod:`~ase_deepspin.model.descriptor`) and fitting net run
        per centre type, with the edges grouped by (centre type, neighbour block).
        """
        cfg = self.config
        n_types, n_blocks, width = cfg.n_types, 2 * cfg.n_types, cfg.neuron[-1]
        blocks = atom_types.index_select(0, neighbors) + n_types * pseudo.to(torch.int64)
        pair = atom_types.index_select(0, centers) * n_blocks + blocks
        # one permutation of the (gradient-free) edge inputs makes every embedding net's edges a
        # contiguous slice, still sorted by centre: no gathers of environment rows, none in backward
        order = torch.argsort(pair, stable=True)
        centers, neighbors, offsets, pseudo, blocks = (x.index_select(0, order)
                                                       for x in (centers, neighbors, offsets, pseudo, blocks))
        bounds = [0, *torch.bincount(pair, minlength=n_types * n_blocks).cumsum(0).tolist()]
        edge_frames = atom_frames.index_select(0, centers) if strain is not None and len(strain) > 1 else None
        lattice, shift = self.edge_parts(positions, spins, atom_types, centers, neighbors, offsets, pseudo,
                                         strain, edge_frames)
        # with time reversal the pseudo blocks are evaluated at R_j + eta S_j and at R_j - eta S_j, each
        # on its edges within rcut; real blocks are shared by both halves
        halves = self.spin_halves(lattice, shift)
        inside = None
        if cfg.time_reversal:
            inside = [~pseudo | (torch.linalg.vector_norm(v.detach(), dim=-1) < cfg.rcut) for v in halves]
        center_local = centers - first
        local_types = atom_types[first : first + n_centres]
        empty = [(self.sel - counts).to(lattice.dtype)  # [n_centres, 2T] per half
                 for counts in self.slot_counts(center_local, blocks, n_centres, inside)]
        members_of = [(local_types == t).nonzero().squeeze(-1) for t in range(n_types)]
        rank = torch.empty(n_centres, dtype=torch.int64, device=lattice.device)  # index of a centre among its type
        for members in members_of:
            rank[members] = torch.arange(len(members), device=lattice.device)
        edge_rank = rank.index_select(0, center_local)
        energies = lattice.new_zeros(n_centres)
        for t, members in enumerate(members_of):
            n_t = len(members)
            if n_t == 0:
                continue

            def moment_of(vectors, block_range, start, keep=None):
                for b in block_range:
                    lo, hi = bounds[t * n_blocks + b], bounds[t * n_blocks + b + 1]
                    v, r = vectors[lo:hi], edge_rank[lo:hi]
                    if keep is not None and not bool(keep[lo:hi].all()):
                        v, r = v[keep[lo:hi]], r[keep[lo:hi]]
                    if len(v):
                        start = start + self.block_moment(t * n_blocks + b, v, r, n_t, twice_differentiable)
                return start

            shared = moment_of(lattice, range(n_types), 0.0)
            slot_rows = self.empty_slot_rows(t)
            moment = torch.cat([
                moment_of(vectors, range(n_types, n_blocks),
                          shared + (empty[h].index_select(0, members) @ slot_rows).view(n_t, 4, width),
                          None if inside is None else inside[h])
                for h, vectors in enumerate(halves)])
            axes = moment / self.n_slots
            desc = torch.bmm(axes.transpose(1, 2), axes[:, :, : cfg.axis_neuron]).reshape(len(moment), -1)
            network = self.fitting[t](desc).view(len(halves), n_t).mean(0)
            energies = energies.index_put((members,), network + self.energy_bias[t])
        if self.baseline is not None or self.wall is not None:
            real = [slice(bounds[t * n_blocks + b], bounds[t * n_blocks + b + 1])
                    for t in range(n_types) for b in range(n_types)]

            def take(x, slices):
                return torch.cat([x[s] for s in slices]) if slices else x[:0]
        if self.baseline is not None:
            # real edges between magnetic types
            slices = [real[t * n_types + b] for t in range(n_types) for b in range(n_types)
                      if cfg.magnetic[t] and cfg.magnetic[b]]
            energies = energies + self.baseline.atomic_energies(spins, atom_types, take(centers, slices),
                                                                take(neighbors, slices), take(lattice, slices),
                                                                first, n_centres)
        if self.wall is not None:
            energies = energies + self.wall.atomic_energies(atom_types, take(centers, real), take(neighbors, real),
                                                            take(lattice, real), first, n_centres)
        return energies

    def forward(self, positions, spins, atom_types, centers, neighbors, offsets, pseudo,
                atom_frames=None, n_frames: int = 1, *, forces: bool = True, torques: bool = True,
                virial: bool = False, create_graph: bool = False, max_edges_per_chunk: int | None = None):
        """Energies and their derivatives for one or more frames concatenated atom-wise.

        Parameters
        ----------
        positions : [N, 3] Å (float64 recommended whatever the model dtype, see :meth:`edge_vectors`);
        spins : [N, 3] μB; atom_types : [N] int64 (index into type_map)
        centers, neighbors : [E] int64 edge ends, sorted by centre (see ``neighbors.py``)
        offsets : [E, 3] Å, Cartesian lattice shift of each neighbour image (n @ cell), dtype of positions
        pseudo : [E] bool, neighbour is the pseudo-atom of atom ``neighbors``
        atom_frames : [N] int64 frame of each atom (default: all in frame 0); n_frames : B
        forces, torques, virial : which derivatives to return
        create_graph : keep the graph of the derivatives (training on forces and torques)
        max_edges_per_chunk : evaluate centres in chunks of about this many edges, so that
            peak memory is bounded; results are exact (the energy is a sum over centres).

        Returns
        -------
        dict with ``energy`` [B] eV (float64), ``atomic_energies`` [N] eV and, as requested, ``forces``
        [N, 3] eV/Å (dtype of positions), ``torques`` [N, 3] eV/μB, ``virial`` [B, 3, 3] eV.
        """
        n_atoms = positions.shape[0]
        if atom_frames is None:
            atom_frames = torch.zeros(n_atoms, dtype=torch.int64, device=positions.device)
        inputs = {}
        if forces:
            positions = positions.detach().requires_grad_(True) if not positions.requires_grad else positions
            inputs["forces"] = positions
        if torques:
            spins = spins.detach().requires_grad_(True) if not spins.requires_grad else spins
            inputs["torques"] = spins
        strain = None
        if virial:
            strain = torch.zeros(n_frames, 3, 3, dtype=positions.dtype, device=positions.device,
                                 requires_grad=True)
            inputs["virial"] = strain

        chunks = self._chunks(centers, n_atoms, max_edges_per_chunk)
        atomic, grads = [], {k: None for k in inputs}
        with torch.enable_grad():
            for first, stop, e0, e1 in chunks:
                energies = self.atomic_energies(
                    positions, spins, atom_types, centers[e0:e1], neighbors[e0:e1], offsets[e0:e1],
                    pseudo[e0:e1], first, stop - first, strain, atom_frames, twice_differentiable=create_graph,
                )
                if inputs:
                    got = torch.autograd.grad(energies.sum(), list(inputs.values()), create_graph=create_graph,
                                              retain_graph=create_graph, allow_unused=True)
                    for k, g in zip(inputs, got):
                        if g is not None:
                            grads[k] = g if grads[k] is None else grads[k] + g
                    if not create_graph:
                        energies = energies.detach()
                atomic.append(energies)
        atomic = torch.cat(atomic)
        # frame energies are accumulated in float64 even for float32 models (10^4 atoms × ~5 eV)
        energy = atomic.new_zeros(n_frames, dtype=torch.float64).index_add(0, atom_frames, atomic.double())
        out = {"energy": energy, "atomic_energies": atomic}
        for k, t in inputs.items():
            g = grads[k] if grads[k] is not None else torch.zeros_like(t)
            out[k] = -g
        return out

    @staticmethod
    def _chunks(centers, n_atoms, max_edges):
        """Contiguous (first_atom, stop_atom, first_edge, stop_edge) ranges of about max_edges edges."""
        if max_edges is None or len(centers) <= max_edges:
            return [(0, n_atoms, 0, len(centers))]
        if bool((centers[1:] < centers[:-1]).any()):
            raise ValueError("chunked evaluation needs edges sorted by centre (as the neighbour lists of "
                             "ase_deepspin.neighbors are); sort them or pass max_edges_per_chunk=None")
        starts = torch.searchsorted(centers, torch.arange(n_atoms + 1, device=centers.device))
        chunk_of_atom = starts[:-1] // max_edges
        ends = centers.new_tensor([0]), centers.new_tensor([n_atoms])
        bounds = torch.cat([ends[0], (chunk_of_atom[1:] != chunk_of_atom[:-1]).nonzero().squeeze(-1) + 1,
                            ends[1]]).tolist()
        starts = starts.tolist()
        return [(a, b, starts[a], starts[b]) for a, b in zip(bounds[:-1], bounds[1:])]
