"""Neighbour lists of real atoms and their spin pseudo-atoms.

DeepSPIN places a massless pseudo-atom at ``R_i + eta_i * S_i`` for every magnetic atom i.
Pseudo-atoms are neighbours, never centres. A single compiled neighbour search (vesin) over the
real atoms, with the cutoff widened by the largest pseudo-atom offset, finds every candidate
pair (vesin's half list, mirrored and sorted by centre once per search); real and pseudo-atom
edges are then selected from it with vectorised torch operations (multi-threaded), so the cost
stays linear in the number of atoms.

Edges are returned sorted by centre, each centre's own pseudo-atom first. Each edge carries the
integer cell shift of its neighbour (and its Cartesian offset) so that models can rebuild edge
vectors in torch (and differentiate through positions, spins and the cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import vesin


@dataclass(frozen=True)
class NeighborList:
    """Directed edges from real centres to real and pseudo-atom neighbours.

    Attributes
    ----------
    centers, neighbors : (E,) int64
        Atom indices. For a pseudo edge, ``neighbors`` is the index of the real atom whose
        pseudo-atom is the neighbour (a centre's own pseudo-atom appears as ``neighbors == centers``
        with zero shift).
    shifts : (E, 3) int64
        Integer lattice shift n of the neighbour: its image sits at ``R_j + n @ cell``.
    pseudo : (E,) bool
        True where the neighbour is a pseudo-atom.
    offsets : (E, 3) float64
        Cartesian lattice shift ``n @ cell`` of the neighbour image (Å).
    """

    centers: np.ndarray
    neighbors: np.ndarray
    shifts: np.ndarray
    pseudo: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.centers)


def build_neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc,
    pseudo_offsets: np.ndarray,
    cutoff: float,
) -> NeighborList:
    """All real and pseudo-atom neighbours within ``cutoff`` of every real atom.

    Parameters
    ----------
    positions : (N, 3) float, Å
    cell : (3, 3) float, Å, rows are lattice vectors (ignored along non-periodic axes)
    pbc : bool or three bools
    pseudo_offsets : (N, 3) float, Å
        ``eta_i * S_i`` for magnetic atoms; rows of zeros mark atoms without a pseudo-atom
        (exactly zero rows only, so a magnetic atom must have a non-zero spin).
    cutoff : float, Å
        Strict cutoff: pairs with distance ``< cutoff`` are kept.

    Works for periodic, mixed and open boundaries and for cells smaller than twice the cutoff
    (a neighbour may then appear several times with different shifts, including the centre's
    own periodic images). Raises ValueError if an atom overlaps another atom or a pseudo-atom.
    For repeated calls on slowly changing structures use :class:`NeighborSearch`.
    """
    return NeighborSearch(cutoff, skin=0.0)(positions, cell, pbc, pseudo_offsets)


class NeighborSearch:
    """Neighbour lists of real and pseudo-atoms that reuse their pair candidates (a Verlet skin).

    The compiled search runs with reach ``cutoff + max |eta S| + skin``; later calls reuse its
    candidate pairs while the cell and boundary conditions are unchanged and the largest atomic
    displacement d since that search satisfies ``2 d + max |eta S| <= max |eta S|_then + skin``, so
    no pair within ``cutoff`` can have been missed. Spin-only changes (spin relaxation, spin
    dynamics on a fixed lattice) therefore never search again. Results equal those of
    :func:`build_neighbor_list` up to the order of edges within a centre.

    Parameters: ``cutoff`` (Å, strict) and ``skin`` (Å, >= 0; 0 searches on every call unless
    positions and offsets' largest length are unchanged).
    """

    def __init__(self, cutoff: float, skin: float = 0.5):
        if not cutoff > 0 or not skin >= 0:
            raise ValueError(f"need cutoff > 0 and skin >= 0 (Å), got {cutoff}, {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self._candidates = None
        self.n_searches = 0

    def __call__(self, positions, cell, pbc, pseudo_offsets) -> NeighborList:
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.ascontiguousarray(cell, dtype=np.float64)
        pseudo_offsets = torch.as_tensor(np.asarray(pseudo_offsets, dtype=np.float64))
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        has_pseudo = (pseudo_offsets != 0.0).any(dim=1)
        offset_norm = torch.linalg.vector_norm(pseudo_offsets, dim=1)
        longest = float(offset_norm.max()) if len(positions) else 0.0
        pairs = self._pairs(positions, cell, pbc, longest)
        i, j, vectors = pairs["i"], pairs["j"], pairs["vectors"]

        # torch rather than NumPy for the selection: the same operations, on every core
        cutoff2 = self.cutoff**2
        real_d2 = torch.einsum("ex,ex->e", vectors, vectors)
        real = real_d2 < cutoff2
        pseudo_vectors = vectors + pseudo_offsets.index_select(0, j)
        pseudo_d2 = torch.einsum("ex,ex->e", pseudo_vectors, pseudo_vectors)
        pseudo = has_pseudo.index_select(0, j) & (pseudo_d2 < cutoff2)
        for d2, mask, what in ((real_d2, real, "atom"), (pseudo_d2, pseudo, "the pseudo-atom of atom")):
            close = (mask & (d2 < 1e-12)).nonzero()
            if len(close):
                k = int(close[0])
                raise ValueError(f"atom {int(i[k])} overlaps {what} {int(j[k])} (distance 0)")
        own = has_pseudo & (offset_norm < self.cutoff)  # each centre's own pseudo-atom
        # three slots per candidate: the centre's own pseudo-atom (on the first candidate of each
        # centre only), the real neighbour, its pseudo-atom; taking the filled slots in order keeps
        # the edges sorted by centre, own pseudo-atom first, without a sort
        slots = torch.stack([pairs["first"] & own.index_select(0, i), real, pseudo], dim=1)
        edge = slots.reshape(-1).nonzero().squeeze(-1)
        candidate, slot = edge // 3, edge % 3
        centers = i.index_select(0, candidate)
        is_own = slot == 0
        neighbors = torch.where(is_own, centers, j.index_select(0, candidate))
        shifts = pairs["shifts"].index_select(0, candidate).to(torch.int64).masked_fill_(is_own.unsqueeze(-1), 0)
        lonely = own & (pairs["count"] == 0)  # atoms without candidates: append their own edges and sort
        if bool(lonely.any()):
            extra = lonely.nonzero().squeeze(-1)
            centers, neighbors = torch.cat([centers, extra]), torch.cat([neighbors, extra])
            shifts, slot = torch.cat([shifts, shifts.new_zeros(len(extra), 3)]), torch.cat([slot, slot.new_zeros(len(extra))])
            order = torch.argsort(centers, stable=True)
            centers, neighbors, shifts, slot = centers[order], neighbors[order], shifts[order], slot[order]
        shifts = shifts.numpy()
        return NeighborList(centers.numpy(), neighbors.numpy(), shifts, (slot != 1).numpy(), shifts @ pairs["box"])

    def _pairs(self, positions, cell, pbc, longest) -> dict:
        """Candidate pairs, sorted by centre: ``i``, ``j``, ``shifts`` (int32), ``vectors``
        (R_j + n·cell − R_i), ``first`` (first candidate of its centre) and ``count`` per atom."""
        cached = self._candidates
        if cached is not None and len(positions) == len(cached["positions"]) and np.array_equal(pbc, cached["pbc"]) \
                and np.array_equal(cell, cached["cell"]):
            step = positions - cached["positions"]
            moved = np.sqrt(np.einsum("ax,ax->a", step, step).max(initial=0.0))
            if 2.0 * moved + longest <= cached["longest"] + self.skin:
                if moved > 0:
                    if "lattice_shift" not in cached:
                        then = torch.from_numpy(cached["positions"])
                        cached["lattice_shift"] = cached["vectors"] - (then.index_select(0, cached["j"])
                                                                       - then.index_select(0, cached["i"]))
                    now = torch.from_numpy(positions)
                    vectors = now.index_select(0, cached["j"]) - now.index_select(0, cached["i"])
                    return {**cached, "vectors": vectors.add_(cached["lattice_shift"])}
                return cached
        reach = self.cutoff + longest + self.skin
        box = np.where(pbc[:, None], cell, 0.0)
        # the half list is twice as fast to search; mirroring it is cheaper than searching both ways
        search = vesin.NeighborList(cutoff=reach, full_list=False)
        i, j, shifts, vectors = search.compute(positions, box, [bool(p) for p in pbc], quantities="ijSD")
        i, j = torch.from_numpy(i.view(np.int64)), torch.from_numpy(j.view(np.int64))
        shifts, vectors = torch.from_numpy(shifts), torch.from_numpy(vectors)
        i, j = torch.cat([i, j]), torch.cat([j, i])
        shifts, vectors = torch.cat([shifts, -shifts]), torch.cat([vectors, -vectors])
        i, order = torch.sort(i.to(torch.int32), stable=True)  # a 32-bit key sorts several times faster
        i, j = i.to(torch.int64), j.index_select(0, order)
        shifts, vectors = shifts.index_select(0, order), vectors.index_select(0, order)
        count = torch.bincount(i, minlength=len(positions))
        first = torch.ones(len(i), dtype=torch.bool)
        first[1:] = i[1:] != i[:-1]
        self.n_searches += 1
        self._candidates = {"positions": positions.copy(), "cell": cell.copy(), "pbc": pbc, "longest": longest,
                            "box": box, "i": i, "j": j, "shifts": shifts, "vectors": vectors, "first": first,
                            "count": count}
        return self._candidates
