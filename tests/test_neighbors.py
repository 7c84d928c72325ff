"""Neighbour lists against brute force over periodic images."""

import itertools

import numpy as np
import pytest

from ase_deepspin.neighbors import build_neighbor_list


def brute_force(positions, cell, pbc, offsets, cutoff):
    """Every (i, j, shift, pseudo) within ``cutoff``, testing each pair in a generous block of images."""
    reps = [int(np.ceil((cutoff + np.abs(offsets).max() * 2) / 1.0)) + 3 if p else 0 for p in pbc]
    shifts = np.array(list(itertools.product(*[range(-r, r + 1) for r in reps])))  # [K, 3]
    d = positions[None, None, :, :] + (shifts @ cell)[:, None, None, :] - positions[None, :, None, :]  # [K, i, j, 3]
    n = len(positions)
    self_pair = (np.abs(shifts).sum(axis=1) == 0)[:, None, None] & np.eye(n, dtype=bool)[None]
    real = (np.linalg.norm(d, axis=-1) < cutoff) & ~self_pair
    image = (np.linalg.norm(d + offsets[None, None, :, :], axis=-1) < cutoff) & offsets.any(axis=1)[None, None, :]
    return {(int(i), int(j), tuple(int(s) for s in shifts[k]), is_pseudo)
            for is_pseudo, mask in ((False, real), (True, image)) for k, i, j in zip(*np.nonzero(mask))}


def union_of_signs(positions, cell, pbc, offsets, cutoff):
    """Brute-force edges of pseudo-atoms at R + offset or R − offset (time-reversal-symmetric models)."""
    real = {e for e in brute_force(positions, cell, pbc, offsets, cutoff) if not e[3]}
    return real | {e for sign in (1, -1) for e in brute_force(positions, cell, pbc, sign * offsets, cutoff) if e[3]}


def as_set(nl):
    return {(int(i), int(j), tuple(int(s) for s in shift), bool(p))
            for i, j, shift, p in zip(nl.centers, nl.neighbors, nl.shifts, nl.pseudo)}


def small_triclinic_system(rng):
    """Cell (Å), five positions and pseudo-atom offsets (three magnetic atoms) of a 3 Å triclinic cell."""
    cell = np.array([[3.1, 0.0, 0.0], [0.9, 2.8, 0.0], [0.4, -0.6, 3.3]])
    offsets = np.zeros((5, 3))
    positions = rng.uniform(size=(5, 3)) @ cell
    offsets[[0, 2, 3]] = rng.normal(scale=0.4, size=(3, 3))
    return cell, positions, offsets


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True), (False, False, False)])
def test_matches_brute_force_small_triclinic_cell(pbc):
    cell, positions, offsets = small_triclinic_system(np.random.default_rng(0))
    nl = build_neighbor_list(positions, cell, pbc, offsets, cutoff=4.2)
    assert as_set(nl) == brute_force(positions, cell, pbc, offsets, 4.2)
    assert len(as_set(nl)) == len(nl)  # no duplicates
    assert np.all(np.diff(nl.centers) >= 0)
    assert np.allclose(nl.offsets, nl.shifts @ cell, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pbc", [(True, True, True), (False, False, False)])
def test_both_signs_keep_pseudo_atoms_within_the_cutoff_for_s_or_minus_s(pbc):
    cell, positions, offsets = small_triclinic_system(np.random.default_rng(2))
    offsets *= 4.0  # pseudo-atoms ~1.6 Å from their atoms: many are inside for one sign only
    nl = build_neighbor_list(positions, cell, pbc, offsets, cutoff=2.5, both_signs=True)
    expected = union_of_signs(positions, cell, pbc, offsets, 2.5)
    assert as_set(nl) == expected and len(nl) == len(expected)
    assert len(expected) > len(brute_force(positions, cell, pbc, offsets, 2.5))  # the test has one-sign edges


def test_own_pseudo_atom_is_a_neighbour_and_pseudo_atoms_are_never_centres():
    positions = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    offsets = np.array([[0.0, 0.0, 0.4], [0.0, 0.0, 0.0]])
    nl = build_neighbor_list(positions, np.zeros((3, 3)), False, offsets, cutoff=3.0)
    assert as_set(nl) == {(0, 0, (0, 0, 0), True)}


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True)])
def test_reused_candidates_give_the_exact_list_after_moves_and_spin_changes(pbc):
    """A NeighborSearch with a skin matches brute force along a trajectory, searching only when it must."""
    from ase_deepspin.neighbors import NeighborSearch

    rng = np.random.default_rng(1)
    cell, positions, offsets = small_triclinic_system(rng)
    search = NeighborSearch(4.2, skin=0.4)
    for step in range(8):
        if step % 2:  # spins turn at fixed length
            turned = rng.normal(size=(3, 3))
            turned /= np.linalg.norm(turned, axis=1, keepdims=True)
            offsets[[0, 2, 3]] = np.linalg.norm(offsets[[0, 2, 3]], axis=1, keepdims=True) * turned
        else:  # atoms move by up to 0.2 Å per step
            positions = positions + rng.uniform(-0.12, 0.12, size=positions.shape)
        nl = search(positions, cell, pbc, offsets)
        assert as_set(nl) == brute_force(positions, cell, pbc, offsets, 4.2)
        assert len(as_set(nl)) == len(nl) and np.all(np.diff(nl.centers) >= 0)
    assert 1 < search.n_searches < 8  # reused some steps, searched again once atoms had moved enough
