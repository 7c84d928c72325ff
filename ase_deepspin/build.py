"""Builders of magnetic structures used by examples, tests and benchmarks."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, make_supercell


def nio_afm(a: float = 4.17, moment: float = 1.27, repeat=(1, 1, 1), cubic: bool = False,
            axis=(1.0, 1.0, -2.0)) -> Atoms:
    """Rock-salt NiO with type-II antiferromagnetic order (ferromagnetic {111} planes, alternating).

    Parameters
    ----------
    a : cubic lattice constant, Å (experiment: 4.17).
    moment : Ni moment, μB (DeltaSpin labels of the shipped data: about 1.27).
    repeat : repetition of the magnetic cell.
    cubic : False gives the 4-atom rhombohedral magnetic cell (2 Ni + 2 O) as the unit;
        True gives the 64-atom 2×2×2 conventional cube.
    axis : spin direction of the "up" planes (normalised; NiO's easy axis lies in the (111) plane).

    Spins are set with ``set_initial_magnetic_moments`` as an (N, 3) array, zero on O.
    """
    if cubic:
        atoms = bulk("NiO", "rocksalt", a=a, cubic=True).repeat((2, 2, 2))
    else:
        # lattice vectors (in units of a/2) whose index sums are multiples of 4 keep the order periodic
        atoms = make_supercell(bulk("NiO", "rocksalt", a=a),
                               np.array([[1, -1, 0], [0, 1, -1], [1, 1, 2]]) @ np.linalg.inv(
                                   [[0, 1, 1], [1, 0, 1], [1, 1, 0]]).round(6) * 1.0)
    atoms = atoms.repeat(repeat)
    direction = np.asarray(axis, dtype=float)
    direction /= np.linalg.norm(direction)
    plane = np.rint(2.0 * atoms.positions.sum(axis=1) / a).astype(int) // 2  # (111) plane index
    sign = np.where(plane % 2 == 0, 1.0, -1.0)
    is_ni = np.array(atoms.get_chemical_symbols()) == "Ni"
    atoms.set_initial_magnetic_moments(np.where(is_ni[:, None], moment * sign[:, None] * direction, 0.0))
    return atoms


def simple_cubic_spins(n: int, a: float = 2.5, moment: float = 2.0, element: str = "Fe", seed: int = 0) -> Atoms:
    """Periodic n×n×n simple-cubic lattice (spacing ``a`` Å) with random spins of ``moment`` μB."""
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) * a
    atoms = Atoms(f"{element}{n ** 3}", positions=grid, cell=[n * a] * 3, pbc=True)
    spins = np.random.default_rng(seed).normal(size=(n**3, 3))
    atoms.set_initial_magnetic_moments(moment * spins / np.linalg.norm(spins, axis=1, keepdims=True))
    return atoms
