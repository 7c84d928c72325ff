"""Neighbour lists of real atoms and their spin pseudo-atoms.

DeepSPIN places a massless pseudo-atom at ``R_i + eta_i * S_i`` for every magnetic atom i.
Pseudo-atoms are neighbours, never centres. A single compiled neighbour search (vesin) over the
real atoms, with the cutoff widened by the largest pseudo-atom offset, finds every candidate
pair; real and pseudo-atom edges are then selected from it with NumPy, so the cost stays
linear in the number of atoms.

Edges are returned sorted by centre. Each edge carries the integer cell shift of its neighbour
so that models can rebuild edge vectors in torch (and differentiate through positions, spins
and the cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
    """

    centers: np.ndarray
    neighbors: np.ndarray
    shifts: np.ndarray
    pseudo: np.ndarray

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
        pseudo_offsets = np.asarray(pseudo_offsets, dtype=np.float64)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        has_pseudo = np.any(pseudo_offsets != 0.0, axis=1)
        offset_norm = np.linalg.norm(pseudo_offsets, axis=1)
        longest = float(offset_norm.max()) if len(positions) else 0.0
        i, j, shifts, vectors = self._pairs(positions, cell, pbc, longest)

        cutoff = self.cutoff
        real_d2 = np.einsum("ex,ex->e", vectors, vectors)
        real = real_d2 < cutoff**2
        pseudo_vectors = vectors + pseudo_offsets[j]
        pseudo_d2 = np.einsum("ex,ex->e", pseudo_vectors, pseudo_vectors)
        pseudo = has_pseudo[j] & (pseudo_d2 < cutoff**2)
        for d2, mask, what in ((real_d2, real, "atom"), (pseudo_d2, pseudo, "the pseudo-atom of atom")):
            close = np.flatnonzero(mask & (d2 < 1e-12))
            if len(close):
                raise ValueError(f"atom {i[close[0]]} overlaps {what} {j[close[0]]} (distance 0)")
        # candidates come sorted by centre: emit each one's real edge, then its pseudo edge, and put
        # every centre's own pseudo-atom first in its block; no sort over the edges is needed
        keep = np.stack([real, pseudo], axis=1).reshape(-1)
        centers = np.repeat(i, 2)[keep]
        neighbors = np.repeat(j, 2)[keep]
        edge_shifts = np.repeat(shifts, 2, axis=0)[keep]
        is_pseudo = np.tile(np.array([False, True]), len(i))[keep]
        own = np.flatnonzero(has_pseudo & (offset_norm < cutoff))
        if len(own):
            at = np.searchsorted(centers, own, side="left")
            centers = np.insert(centers, at, own)
            neighbors = np.insert(neighbors, at, own)
            edge_shifts = np.insert(edge_shifts, at, 0, axis=0)
            is_pseudo = np.insert(is_pseudo, at, True)
        return NeighborList(centers, neighbors, edge_shifts, is_pseudo)

    def _pairs(self, positions, cell, pbc, longest):
        """Candidate pairs (i, j, shifts, vectors R_j + n·cell − R_i), sorted by i."""
        cached = self._candidates
        if cached is not None and len(positions) == len(cached["positions"]) and np.array_equal(pbc, cached["pbc"]) \
                and np.array_equal(cell, cached["cell"]):
            moved = np.sqrt(np.einsum("ax,ax->a", positions - cached["positions"], positions - cached["positions"])
                            .max(initial=0.0))
            if 2.0 * moved + longest <= cached["longest"] + self.skin:
                i, j, shifts = cached["i"], cached["j"], cached["shifts"]
                vectors = positions[j] - positions[i] + cached["lattice_shift"] if moved > 0 else cached["vectors"]
                return i, j, shifts, vectors
        reach = self.cutoff + longest + self.skin
        search = vesin.NeighborList(cutoff=reach, full_list=True)
        box = np.where(pbc[:, None], cell, 0.0)
        i, j, shifts, vectors = search.compute(positions, box, [bool(p) for p in pbc], quantities="ijSD")
        i, j, shifts = i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64)
        if len(i) > 1 and (np.diff(i) < 0).any():  # vesin sorts by centre today; do not depend on it
            order = np.argsort(i, kind="stable")
            i, j, shifts, vectors = i[order], j[order], shifts[order], vectors[order]
        self.n_searches += 1
        self._candidates = {"positions": positions.copy(), "cell": cell.copy(), "pbc": pbc, "longest": longest,
                            "i": i, "j": j, "shifts": shifts, "vectors": vectors,
                            "lattice_shift": shifts @ box}
        return i, j, shifts, vectors
