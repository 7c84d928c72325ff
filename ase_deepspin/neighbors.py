"""Neighbour lists of real atoms and their spin pseudo-atoms.

DeepSPIN places a massless pseudo-atom at ``R_i + eta_i * S_i`` for every magnetic atom i.
Pseudo-atoms are neighbours, never centres. A single compiled neighbour search (vesin) over the
real atoms, with the cutoff widened by the largest pseudo-atom offset, finds every candidate
pair (vesin's half list, mirrored and grouped by centre once per search); real and pseudo-atom
edges are then selected from it by two compiled (numba) loops over centres, one counting and one
writing, serially on small inputs and on torch's thread count on large ones
(:mod:`~ase_deepspin.threads`); the cost stays linear in the number of atoms.

Edges are returned sorted by centre, each centre's own pseudo-atom first. Each edge carries the
integer cell shift of its neighbour (and its Cartesian offset) so that models can rebuild edge
vectors in torch (and differentiate through positions, spins and the cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vesin
from numba import njit, prange

from .threads import Kernel


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
    both_signs: bool = False,
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
    both_signs : bool
        Also keep a pseudo-atom edge when only its time-reversed image ``R_j − eta_j S_j`` lies
        within the cutoff (models symmetrised under S → −S evaluate both images on one list;
        an image beyond the cutoff contributes as an empty slot).

    Notes
    -----
    Works for periodic, mixed and open boundaries and for cells smaller than twice the cutoff
    (a neighbour may then appear several times with different shifts, including the centre's
    own periodic images). Raises ValueError if an atom overlaps another atom or a pseudo-atom.
    For repeated calls on slowly changing structures use :class:`NeighborSearch`.
    """
    return NeighborSearch(cutoff, skin=0.0)(positions, cell, pbc, pseudo_offsets, both_signs)


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

    def __call__(self, positions, cell, pbc, pseudo_offsets, both_signs: bool = False) -> NeighborList:
        """Edges as :func:`build_neighbor_list` returns them (same arguments)."""
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.ascontiguousarray(cell, dtype=np.float64)
        pseudo_offsets = np.ascontiguousarray(pseudo_offsets, dtype=np.float64)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        longest = float(np.sqrt(np.einsum("ax,ax->a", pseudo_offsets, pseudo_offsets).max(initial=0.0)))
        candidates = self._candidates_for(positions, cell, pbc, longest)
        start, j, shifts, box = candidates["start"], candidates["j"], candidates["shifts"], candidates["box"]
        n_atoms = len(positions)
        counts, overlap = _count_edges(n_atoms, positions, pseudo_offsets, start, j, shifts, box, self.cutoff,
                                       bool(both_signs))
        overlapping = np.flatnonzero(overlap >= 0)
        if len(overlapping):
            atom = int(overlapping[0])
            partner = int(overlap[atom])
            what = "atom" if partner < len(positions) else "the pseudo-atom of atom"
            raise ValueError(f"atom {atom} overlaps {what} {partner % len(positions)} (distance 0)")
        first_edge = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(counts, out=first_edge[1:])
        n_edges = int(first_edge[-1])
        nl = NeighborList(np.empty(n_edges, dtype=np.int64), np.empty(n_edges, dtype=np.int64),
                          np.empty((n_edges, 3), dtype=np.int64), np.empty(n_edges, dtype=bool),
                          np.empty((n_edges, 3), dtype=np.float64))
        _fill_edges(n_atoms, positions, pseudo_offsets, start, j, shifts, box, self.cutoff, bool(both_signs),
                    first_edge, nl.centers, nl.neighbors, nl.shifts, nl.pseudo, nl.offsets)
        return nl

    def _candidates_for(self, positions, cell, pbc, longest) -> dict:
        """Candidate pairs grouped by centre (``start`` [N + 1], ``j``, integer ``shifts``), reused or new."""
        cached = self._candidates
        if cached is not None and len(positions) == len(cached["positions"]) and np.array_equal(pbc, cached["pbc"]) \
                and np.array_equal(cell, cached["cell"]):
            step = positions - cached["positions"]
            moved = np.sqrt(np.einsum("ax,ax->a", step, step).max(initial=0.0))
            if 2.0 * moved + longest <= cached["longest"] + self.skin:
                return cached
        reach = self.cutoff + longest + self.skin
        box = np.where(pbc[:, None], cell, 0.0)
        # the half list is twice as fast to search; mirroring it costs less than searching both ways
        search = vesin.NeighborList(cutoff=reach, full_list=False)
        i, j, shifts = search.compute(positions, box, [bool(p) for p in pbc], quantities="ijS")
        i, j = i.astype(np.int64, copy=False), j.astype(np.int64, copy=False)
        start, partner, partner_shifts = _mirror_by_centre(i, j, np.ascontiguousarray(shifts, dtype=np.int32),
                                                           len(positions))
        self.n_searches += 1
        self._candidates = {"positions": positions.copy(), "cell": cell.copy(), "pbc": pbc, "longest": longest,
                            "box": box, "start": start, "j": partner, "shifts": partner_shifts}
        return self._candidates


@njit(cache=True)
def _mirror_by_centre(i, j, shifts, n_atoms):
    """Full candidate list grouped by centre from a half list: counting sort, both directions."""
    start = np.zeros(n_atoms + 1, dtype=np.int64)
    for k in range(len(i)):
        start[i[k] + 1] += 1
        start[j[k] + 1] += 1
    for a in range(n_atoms):
        start[a + 1] += start[a]
    fill = start[:-1].copy()
    partner = np.empty(2 * len(i), dtype=np.int64)
    partner_shifts = np.empty((2 * len(i), 3), dtype=np.int32)
    for k in range(len(i)):
        for a, b, sign in ((i[k], j[k], 1), (j[k], i[k], -1)):  # a == b for periodic self-images
            partner[fill[a]] = b
            for x in range(3):
                partner_shifts[fill[a], x] = sign * shifts[k, x]
            fill[a] += 1
    return start, partner, partner_shifts


@njit(cache=True, inline="always")
def _lattice(box, shift, x):
    """Component x of the Cartesian lattice shift n·box."""
    return shift[0] * box[0, x] + shift[1] * box[1, x] + shift[2] * box[2, x]


@njit(cache=True, inline="always")
def _classify(positions, offsets, box, a, b, shift, cutoff2, both_signs):
    """For the candidate (a, b, shift) with vector R_b + n·box − R_a: whether atom b and whether its
    pseudo-atom (or, with ``both_signs``, its mirror R_b − eta S_b) lie within the cutoff, and whether
    either overlaps centre a."""
    vx = positions[b, 0] - positions[a, 0] + _lattice(box, shift, 0)
    vy = positions[b, 1] - positions[a, 1] + _lattice(box, shift, 1)
    vz = positions[b, 2] - positions[a, 2] + _lattice(box, shift, 2)
    d2 = vx * vx + vy * vy + vz * vz
    px, py, pz = vx + offsets[b, 0], vy + offsets[b, 1], vz + offsets[b, 2]
    p2 = px * px + py * py + pz * pz
    if both_signs:
        mx, my, mz = vx - offsets[b, 0], vy - offsets[b, 1], vz - offsets[b, 2]
        p2 = min(p2, mx * mx + my * my + mz * mz)
    magnetic = offsets[b, 0] != 0.0 or offsets[b, 1] != 0.0 or offsets[b, 2] != 0.0
    real, image = d2 < cutoff2, magnetic and p2 < cutoff2
    return real, image, real and d2 < 1e-12, image and p2 < 1e-12


@njit(cache=True, inline="always")
def _has_own_edge(offsets, a, cutoff2):
    """Whether atom a carries a pseudo-atom within the cutoff of itself."""
    own2 = offsets[a, 0] ** 2 + offsets[a, 1] ** 2 + offsets[a, 2] ** 2
    return 0.0 < own2 < cutoff2


@Kernel
def _count_edges(positions, offsets, start, j, shifts, box, cutoff, both_signs):
    """Edges per centre (own pseudo-atom, real and pseudo neighbours) and, per centre, the first
    overlapping partner (an atom b as b, the pseudo-atom of b as N + b; −1 if none)."""
    n_atoms = len(positions)
    counts = np.zeros(n_atoms, dtype=np.int64)
    overlap = np.full(n_atoms, -1, dtype=np.int64)
    cutoff2 = cutoff * cutoff
    for a in prange(n_atoms):
        n = 1 if _has_own_edge(offsets, a, cutoff2) else 0
        for k in range(start[a], start[a + 1]):
            b = j[k]
            real, image, real_overlap, image_overlap = _classify(positions, offsets, box, a, b, shifts[k], cutoff2,
                                                                 both_signs)
            n += real + image
            if real_overlap and overlap[a] < 0:
                overlap[a] = b
            if image_overlap and overlap[a] < 0:
                overlap[a] = n_atoms + b
        counts[a] = n
    return counts, overlap


@Kernel
def _fill_edges(positions, offsets, start, j, shifts, box, cutoff, both_signs, first_edge, centers, neighbors,
                edge_shifts, pseudo, edge_offsets):
    """Write each centre's edges from ``first_edge[a]``: own pseudo-atom first, then per candidate
    its real neighbour and its pseudo-atom (the tests of :func:`_count_edges`)."""
    cutoff2 = cutoff * cutoff
    for a in prange(len(positions)):
        e = first_edge[a]
        if _has_own_edge(offsets, a, cutoff2):
            centers[e], neighbors[e], pseudo[e] = a, a, True
            for x in range(3):
                edge_shifts[e, x] = 0
                edge_offsets[e, x] = 0.0
            e += 1
        for k in range(start[a], start[a + 1]):
            b = j[k]
            real, image, _, _ = _classify(positions, offsets, box, a, b, shifts[k], cutoff2, both_signs)
            for is_pseudo, keep in ((False, real), (True, image)):
                if keep:
                    centers[e], neighbors[e], pseudo[e] = a, b, is_pseudo
                    for x in range(3):
                        edge_shifts[e, x] = shifts[k, x]
                        edge_offsets[e, x] = _lattice(box, shifts[k], x)
                    e += 1
