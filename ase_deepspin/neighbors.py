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
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.ascontiguousarray(cell, dtype=np.float64)
    pseudo_offsets = np.asarray(pseudo_offsets, dtype=np.float64)
    n_atoms = len(positions)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    has_pseudo = np.any(pseudo_offsets != 0.0, axis=1)
    offset_norm = np.linalg.norm(pseudo_offsets, axis=1)
    reach = cutoff + (offset_norm.max() if n_atoms else 0.0)

    search = vesin.NeighborList(cutoff=reach, full_list=True)
    box = np.where(pbc[:, None], cell, 0.0)
    i, j, shifts, vectors = search.compute(positions, box, [bool(p) for p in pbc], quantities="ijSD")
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    shifts = shifts.astype(np.int64)

    real_d2 = np.einsum("ex,ex->e", vectors, vectors)
    real = real_d2 < cutoff**2
    pseudo_vectors = vectors + pseudo_offsets[j]
    pseudo_d2 = np.einsum("ex,ex->e", pseudo_vectors, pseudo_vectors)
    pseudo = has_pseudo[j] & (pseudo_d2 < cutoff**2)
    for d2, mask, what in ((real_d2, real, "atom"), (pseudo_d2, pseudo, "the pseudo-atom of atom")):
        close = np.flatnonzero(mask & (d2 < 1e-12))
        if len(close):
            raise ValueError(f"atom {i[close[0]]} overlaps {what} {j[close[0]]} (distance 0)")
    own = np.flatnonzero(has_pseudo & (offset_norm < cutoff))

    centers = np.concatenate([i[real], i[pseudo], own])
    neighbors = np.concatenate([j[real], j[pseudo], own])
    all_shifts = np.concatenate([shifts[real], shifts[pseudo], np.zeros((len(own), 3), np.int64)])
    is_pseudo = np.concatenate([np.zeros(real.sum(), bool), np.ones(pseudo.sum() + len(own), bool)])
    order = np.argsort(centers, kind="stable")
    return NeighborList(centers[order], neighbors[order], all_shifts[order], is_pseudo[order])
