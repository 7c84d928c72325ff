"""A descriptor of spin invariants: exact under rotating the spins alone, and under S → −S.

Geometry comes from real atoms only (the se_e2_a rows d_ij of :mod:`~ase_deepspin.model.descriptor`,
one embedding net G per (centre type, neighbour type)); spins enter only through scalars that no
rotation or reversal of all spins together changes. With m_i = S_i / m0(t_i) (``moment_scale``, the
mean training moment of the type), q_i = |m_i|² and the cosine

    c_ij = S_i·S_j / sqrt((f² + |S_i|²)(f² + |S_j|²))      (f = ``moment_floor``, μB)

which tends to ŝ_i·ŝ_j for large moments and smoothly to 0 as either vanishes, each edge touching a
magnetic atom gets a spin gate and each magnetic neighbour a spin vector:

    g_ij = G(d_ij[0]) ⊙ [1 + s_ij Γ(c_ij, q_i, q_j)]          (Γ: a small net per type pair, M outputs)
    A_i  = Σ_j d_ijᵀ g_ij / N_c                              (4 × M, empty slots as in se_e2_a)
    B_i  = Σ_j s_ij g_ij[:a] ⊗ m_j / N_c                     (a × 3, a = axis_neuron; spin-space vectors)

with s_ij the radial switch (so a neighbour leaving the cutoff leaves as an empty slot does) and
N_c = Σ sel; B'_i is B_i with each neighbour also switched by s'_ij, which ends at ``correlation_rcut``
(default rcut). The features of centre i are::

    D_i = A_iᵀ A_i[:, :a]      (M·a)   geometry, gated by S_i·S_j and moment lengths: exchange at every
                                       radius and bond angle, (S_i·S_j)(S_i·S_k) weighted by the angle
    B_i m_i                    (a)     Σ_j g s m_i·m_j: Heisenberg exchange as a linear readout
    B'_i B'_iᵀ                 (a·a)   Σ_jk g g s s s' s' m_j·m_k: neighbour–neighbour spin correlation (on
                                       an anion too: superexchange sits where the physics puts it)
    q_i                        (1)     moment length (longitudinal energy)

B'B'ᵀ couples the spins of two neighbours j, k (up to 2·correlation_rcut apart) at second order even in a
collinear state, where the gates' cosines are stationary; a model learns those couplings only for
pairs that its training cells hold as distinct atoms. Keep 2·correlation_rcut below the shortest
periodic image distance of the training cells: pairs that are images of one atom there are pairs of
atoms free to turn apart in a larger cell, where the model's coupling between them is a guess
(measured on NiO: −0.18 to −0.27 eV/rad² spin-Hessian modes at AFM-II in a 64-atom cell with the
full rcut of 5.6 Å, where the training cells' images lie 5.9 Å apart).

Every entry is a lattice scalar times a spin-space dot product, so lattice and spin rotations act
separately and all are even in S; everything is polynomial or smooth in the components of S, so torques
are finite and continuous through S_i = 0. On collinear frames −∂E/∂S_i is a combination of the S_j:
no transverse torque. Γ starts at zero (its last layer is zero-initialised): a new model starts as
a spin-free se_e2_a plus the two spin-vector readouts.

Spin–orbit coupling (DMI, anisotropy) cannot be expressed by construction.
Compression tabulates the radial nets G as for the pseudo-atom descriptor; the gates are evaluated
per edge (they take three inputs).
"""


from typing import List

import numpy as np
import torch
from torch import nn

from . import fused
from .descriptor import RadialEmbeddings, contract, mlp, overflow_message, smooth_switch


class SpinInvariantDescriptor(RadialEmbeddings):
    """The descriptor of the module docstring (the descriptor protocol of :mod:`.descriptor`).

    Blocks: the T element types (real atoms only); ``embedding[t * T + b]`` and ``gates[t * T + b]``
    (gates of type pairs without a magnetic type exist but are never evaluated). Buffers beyond
    :class:`~.descriptor.RadialEmbeddings`': ``moment_scale`` [T] μB (set with the statistics).
    """

    def __init__(self, config, generator: torch.Generator, dtype: torch.dtype):
        super().__init__(config, config.n_types, list(config.sel), list(config.type_map), generator, dtype)
        n = config.n_types
        self.moment_floor = float(config.moment_floor)
        # neighbours of the B_i B_iᵀ readout: within correlation_rcut, switched off over the model's switch width
        self.correlation_rcut = float(config.correlation_rcut if config.correlation_rcut is not None else config.rcut)
        self.correlation_smth = self.correlation_rcut - (config.rcut - config.rcut_smth)
        if self.correlation_rcut >= config.rcut:  # s' = 1 within rcut: B' = B
            self.correlation_smth, self.correlation_rcut = 2.0 * config.rcut, 3.0 * config.rcut
        self.gates = nn.ModuleList(
            mlp([3, *config.gate_neuron, self.width], timestep=False, linear_output=True, generator=generator,
                dtype=dtype)
            for _ in range(n * n)
        )
        with torch.no_grad():  # Γ = 0 at the start: a spin-free se_e2_a plus the spin-vector readouts
            for gate in self.gates:
                gate[-1].weight.zero_()
                gate[-1].bias.zero_()
        self.register_buffer("moment_scale", torch.ones(n, dtype=dtype))
        self.register_buffer("magnetic", torch.tensor(config.magnetic, dtype=torch.bool), persistent=False)

    @property
    def n_features(self) -> int:
        """Width of the features: M·a + a + a² + 1."""
        return self.width * self.axis_neuron + self.axis_neuron + self.axis_neuron * self.axis_neuron + 1

    def forward(self, spins: torch.Tensor, atom_types: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                lattice: torch.Tensor, pseudo: torch.Tensor, real: torch.Tensor, first: int, n_centres: int,
                members_of: List[torch.Tensor], twice_differentiable: bool) -> List[torch.Tensor]:
        """Features [1, n_t, n_features] per centre type (pseudo edges, if any, are ignored)."""
        n_types, width, axis = self.n_types, self.width, self.axis_neuron
        rank_of = torch.zeros(n_centres, dtype=torch.int64, device=lattice.device)
        for members in members_of:
            rank_of[members] = torch.arange(members.shape[0], device=lattice.device)
        net_of = atom_types.index_select(0, centers) * n_types + atom_types.index_select(0, neighbors)
        idx, c, bounds = self.sorted_edges(real.nonzero().squeeze(-1), net_of, centers, first, n_centres)
        centre_atoms = c + first
        neighbour_atoms = neighbors.index_select(0, idx)
        vectors = lattice.index_select(0, idx)
        filled = torch.bincount(c * n_types + atom_types.index_select(0, neighbour_atoms),
                                minlength=n_centres * n_types).view(n_centres, n_types)
        over = filled > self.sel
        if bool(over.any()):
            where = over.nonzero()[0]
            raise ValueError(overflow_message(int(filled[where[0], where[1]]), self.names[int(where[1])], self.rcut,
                                              int(self.sel[where[1]])))
        empty = (self.sel - filled).to(lattice.dtype)
        magnetic_atoms = self.magnetic.index_select(0, atom_types)
        spins = spins * magnetic_atoms.unsqueeze(-1).to(spins.dtype)  # no torque on non-magnetic atoms, ever
        scale = torch.where(magnetic_atoms, self.moment_scale.index_select(0, atom_types),
                            torch.ones_like(self.moment_scale.index_select(0, atom_types)))
        moments = spins / scale.unsqueeze(-1)  # m = S / m0, zero on non-magnetic atoms
        squares = (spins * spins).sum(-1)  # |S|², μB²
        lengths = (moments * moments).sum(-1)  # q
        floor = self.moment_floor * self.moment_floor
        features: List[torch.Tensor] = []
        for t in range(n_types):
            members = members_of[t]
            n_t = members.shape[0]
            if n_t == 0:
                features.append(lattice.new_zeros(1, 0, self.n_features))
                continue
            contraction = (empty.index_select(0, members) @ self.empty_slot_rows(t)).view(n_t, 4, width)
            spin_vectors = lattice.new_zeros(n_t, axis * 3)
            near_vectors = lattice.new_zeros(n_t, axis * 3)
            for b in range(n_types):
                p = t * n_types + b
                lo = 0 if p == 0 else bounds[p - 1]
                hi = bounds[p]
                if hi == lo:
                    continue
                rank = rank_of.index_select(0, c[lo:hi])
                if not (bool(self.magnetic[t]) or bool(self.magnetic[b])):
                    contraction = contraction + self.block_contraction(p, vectors[lo:hi], rank, n_t,
                                                                       twice_differentiable)
                    continue
                i, j = centre_atoms[lo:hi], neighbour_atoms[lo:hi]
                cosine = (spins.index_select(0, i) * spins.index_select(0, j)).sum(-1) \
                    / torch.sqrt((floor + squares.index_select(0, i)) * (floor + squares.index_select(0, j)))
                invariants = torch.stack([cosine, lengths.index_select(0, i), lengths.index_select(0, j)], dim=-1)
                neighbour_moments = moments.index_select(0, j) if bool(self.magnetic[b]) else torch.zeros_like(
                    moments.index_select(0, j))
                for q, gate in enumerate(self.gates):
                    if q == p:
                        gates = gate(invariants)  # Γ [E, M]
                        done = False
                        if self.tables is not None and not torch.jit.is_scripting() \
                                and self._fused_usable(vectors, twice_differentiable):
                            block = self._fused_gated(p, vectors[lo:hi], gates, neighbour_moments, rank, n_t)
                            done = not bool(block[3].any())  # else an edge is closer than the table reaches
                            if done:
                                contraction = contraction + block[0]
                                spin_vectors = spin_vectors + block[1].reshape(n_t, axis * 3)
                                near_vectors = near_vectors + block[2].reshape(n_t, axis * 3)
                        if not done:
                            contraction = contraction + self.block_contraction(p, vectors[lo:hi], rank, n_t,
                                                                               twice_differentiable)
                            rows = self.standardised_rows(vectors[lo:hi], t)
                            distance = torch.linalg.vector_norm(vectors[lo:hi], dim=-1)
                            switch = smooth_switch(distance, self.rcut_smth, self.rcut)
                            radial = self.radial(p, rows[:, 0])
                            extra = radial * (switch.unsqueeze(-1) * gates)  # G ⊙ s Γ
                            contraction = contraction + contract(rows, extra, rank, n_t)
                            weight = switch.unsqueeze(-1) * (radial + extra)[:, :axis]
                            weighted = (weight.unsqueeze(-1) * neighbour_moments.unsqueeze(1)).reshape(-1, axis * 3)
                            spin_vectors = spin_vectors.index_add(0, rank, weighted)
                            near = smooth_switch(distance, self.correlation_smth, self.correlation_rcut)
                            near_vectors = near_vectors.index_add(0, rank, near.unsqueeze(-1) * weighted)
            axes = contraction / self.n_slots
            geometry = torch.bmm(axes.transpose(1, 2), axes[:, :, :axis]).reshape(n_t, -1)
            spin_vectors = spin_vectors.view(n_t, axis, 3) / self.n_slots
            own = moments.index_select(0, members + first)
            exchange = (spin_vectors * own.unsqueeze(1)).sum(-1)
            near_vectors = near_vectors.view(n_t, axis, 3) / self.n_slots
            correlation = torch.bmm(near_vectors, near_vectors.transpose(1, 2)).reshape(n_t, -1)
            length = lengths.index_select(0, members + first).unsqueeze(-1)
            features.append(torch.cat([geometry, exchange, correlation, length], dim=-1).unsqueeze(0))
        return features

    # ---------------------------------------------------------------- training (Python only)
    @torch.jit.unused
    def edge_sets(self, spins, atom_types, centers, neighbors, lattice, pseudo) -> list:
        """(centres, edge vectors [E, 3] Å) of the real edges, for statistics."""
        return [(centers[~pseudo], lattice[~pseudo])]

    @torch.no_grad()
    @torch.jit.unused
    def set_moment_scale(self, frames) -> None:
        """``moment_scale``: the mean |S| (μB) of each magnetic type over ``frames`` (dicts with
        ``atom_types`` [N] and ``spins`` [N, 3]); 1 for types never seen with a moment."""
        n = self.n_types
        total = torch.zeros(n, dtype=torch.float64)
        count = torch.zeros(n, dtype=torch.float64)
        for f in frames:
            length = torch.linalg.vector_norm(f["spins"].double(), dim=-1)
            magnetic = length > 0
            total.index_add_(0, f["atom_types"][magnetic], length[magnetic])
            count.index_add_(0, f["atom_types"][magnetic], torch.ones_like(length[magnetic]))
        scale = torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total))
        self.moment_scale.copy_(scale)

    @torch.jit.unused
    def _fused_gated(self, p: int, vectors, gates, neighbour_moments, rank, n_rank: int):
        """A, B, B' and the outside mask of one gated block by :class:`~.fused.FusedGatedContraction`."""
        constants, start = self.fused_inputs(p, rank, n_rank)
        near = np.array([self.correlation_smth, self.correlation_rcut])
        return fused.FusedGatedContraction.apply(vectors, gates, neighbour_moments, start, self.tables[p].coefficients,
                                                 constants, near, self.axis_neuron)
