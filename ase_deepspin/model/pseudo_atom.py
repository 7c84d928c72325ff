"""The DeepSPIN descriptor: se_e2_a over real atoms and spin pseudo-atoms (Yang et al. 2024).

Each magnetic atom j carries a massless pseudo-atom at R_j + η S_j (η = ``virtual_scale``, Å/μB per
type); a centre sees real neighbours and pseudo-atoms within ``rcut``, its own pseudo-atom included
(pseudo-atoms are never centres). Neighbour blocks follow DeePMD-kit's spin models: the type map is
doubled (real types, then one pseudo-type per real type, those of non-magnetic types unused) and
``sel`` has one entry per doubled type. The rows and contraction are those of
:mod:`~ase_deepspin.model.descriptor`.

With ``time_reversal`` the features are given twice, at S and at −S (pseudo-atoms at R_j − η S_j);
the energy core averages the fitting net over both, so the energy is exactly even in S. Real-atom
blocks and empty slots are shared by the two halves.

The descriptor is rotation-invariant only for rotations of lattice and spins together: it cannot
express labels that are unchanged when the spins rotate alone (see
:mod:`~ase_deepspin.model.spin_invariant` for that).
"""


from typing import List

import torch

from .descriptor import RadialEmbeddings, overflow_message


class PseudoAtomDescriptor(RadialEmbeddings):
    """se_e2_a over real and pseudo-atom neighbours (the descriptor protocol of :mod:`.descriptor`).

    Blocks: the T element types, then their T pseudo-types; ``embedding[t * 2T + b]``.
    Buffers beyond :class:`~.descriptor.RadialEmbeddings`': ``virtual_scale`` [T] Å/μB.
    """

    def __init__(self, config, generator: torch.Generator, dtype: torch.dtype):
        names = list(config.type_map) + [f"{t}_spin" for t in config.type_map]
        super().__init__(config, 2 * config.n_types, list(config.sel), names, generator, dtype)
        self.time_reversal = bool(config.time_reversal)
        self.register_buffer("virtual_scale", torch.tensor(config.virtual_scale, dtype=dtype))

    @property
    def n_features(self) -> int:
        """Width of the features: M × axis_neuron."""
        return self.width * self.axis_neuron

    def pseudo_shift(self, spins: torch.Tensor, atom_types: torch.Tensor, neighbors: torch.Tensor,
                     pseudo: torch.Tensor) -> torch.Tensor:
        """η_j S_j [E, 3] (Å) on pseudo edges, zero on real ones."""
        eta = self.virtual_scale.index_select(0, atom_types.index_select(0, neighbors)) * pseudo.to(spins.dtype)
        return eta.unsqueeze(-1) * spins.index_select(0, neighbors)

    def halves(self, lattice: torch.Tensor, shift: torch.Tensor) -> List[torch.Tensor]:
        """Edge vectors the network sees: at S and, with time reversal, at −S."""
        if self.time_reversal:
            return [lattice + shift, lattice - shift]
        return [lattice + shift]

    # ---------------------------------------------------------------- the descriptor protocol
    def forward(self, spins: torch.Tensor, atom_types: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                lattice: torch.Tensor, pseudo: torch.Tensor, real: torch.Tensor, first: int, n_centres: int,
                members_of: List[torch.Tensor], twice_differentiable: bool) -> List[torch.Tensor]:
        """Features [H, n_t, M·axis_neuron] per centre type (H = 2 with time reversal, else 1).

        Pseudo edges are candidates: each half keeps those whose pseudo-atom lies within rcut.
        """
        n_types, n_blocks, width = self.n_types, self.n_blocks, self.width
        shift = self.pseudo_shift(spins, atom_types, neighbors, pseudo)
        halves = self.halves(lattice, shift)
        rank_of = torch.zeros(n_centres, dtype=torch.int64, device=lattice.device)
        for members in members_of:
            rank_of[members] = torch.arange(members.shape[0], device=lattice.device)
        centre_types = atom_types.index_select(0, centers)
        blocks = atom_types.index_select(0, neighbors) + n_types * pseudo.to(torch.int64)
        net_of = centre_types * n_blocks + blocks
        # real edges (shared by both halves), then each half's pseudo-atoms within rcut
        groups: List[torch.Tensor] = [real.nonzero().squeeze(-1)]
        for vectors in halves:
            within = pseudo & (torch.linalg.vector_norm(vectors.detach(), dim=-1) < self.rcut)
            groups.append(within.nonzero().squeeze(-1))
        real_count = torch.bincount((centers.index_select(0, groups[0]) - first) * n_blocks
                                    + blocks.index_select(0, groups[0]), minlength=n_centres * n_blocks)
        empty: List[torch.Tensor] = []  # [n_centres, 2T] per half
        moments: List[List[torch.Tensor]] = []  # per group, per centre type [n_t, 4, M]
        for g, idx in enumerate(groups):
            c = centers.index_select(0, idx) - first
            if g > 0:
                filled = (real_count + torch.bincount(c * n_blocks + blocks.index_select(0, idx),
                                                      minlength=n_centres * n_blocks)).view(n_centres, n_blocks)
                over = filled > self.sel
                if bool(over.any()):
                    where = over.nonzero()[0]
                    raise ValueError(overflow_message(int(filled[where[0], where[1]]), self.names[int(where[1])],
                                                      self.rcut, int(self.sel[where[1]])))
                empty.append((self.sel - filled).to(lattice.dtype))
            idx, c, bounds = self.sorted_edges(idx, net_of, centers, first, n_centres)
            vectors = halves[max(g - 1, 0)].index_select(0, idx)
            per_type: List[torch.Tensor] = []
            for t in range(n_types):
                n_t = members_of[t].shape[0]
                contraction = lattice.new_zeros(n_t, 4, width)
                for b in range(n_blocks):
                    p = t * n_blocks + b
                    lo = 0 if p == 0 else bounds[p - 1]
                    hi = bounds[p]
                    if hi > lo and n_t > 0:
                        contraction = contraction + self.block_contraction(p, vectors[lo:hi], rank_of.index_select(0, c[lo:hi]),
                                                            n_t, twice_differentiable)
                per_type.append(contraction)
            moments.append(per_type)
        features: List[torch.Tensor] = []
        for t in range(n_types):
            members = members_of[t]
            n_t = members.shape[0]
            if n_t == 0:
                features.append(lattice.new_zeros(len(halves), 0, self.n_features))
                continue
            slot_rows = self.empty_slot_rows(t)
            per_half: List[torch.Tensor] = []
            for h in range(len(halves)):
                contraction = moments[0][t] + moments[h + 1][t] \
                    + (empty[h].index_select(0, members) @ slot_rows).view(n_t, 4, width)
                axes = contraction / self.n_slots
                per_half.append(torch.bmm(axes.transpose(1, 2), axes[:, :, : self.axis_neuron]).reshape(n_t, -1))
            features.append(torch.stack(per_half))
        return features

    # ---------------------------------------------------------------- training and compression (Python only)
    @torch.jit.unused
    def edge_sets(self, spins, atom_types, centers, neighbors, lattice, pseudo) -> list:
        """(centres, edge vectors [E, 3] Å) that each half sees, for statistics (pseudo-atoms within rcut)."""
        shift = self.pseudo_shift(spins, atom_types, neighbors, pseudo)
        out = []
        for vectors in self.halves(lattice, shift):
            keep = ~pseudo | (torch.linalg.vector_norm(vectors, dim=-1) < self.rcut)
            out.append((centers[keep], vectors[keep]))
        return out
