"""Spin-lattice minimisers: ground states, spirals, Bethe–Slater dimer, monotone energy, DeepSPIN NiO."""

import numpy as np
import pytest

from ase_deepspin.build import simple_cubic_spins
from ase_deepspin.dynamics.minimize import relax_spins
from ase_deepspin.hamiltonian import ShellExchange, SpinHamiltonian

A_SC = 2.5


def sc_with_exchange(J, n=4, seed=1):
    atoms = simple_cubic_spins(n, a=A_SC, moment=2.0, seed=seed)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J,), radii=(A_SC,), tolerance=0.05)})
    return atoms


@pytest.mark.parametrize("J", [0.01, -0.01])
def test_relax_spins_finds_fm_and_afm_ground_states_from_random_spins(J):
    atoms = sc_with_exchange(J)
    moments = np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1)
    assert relax_spins(atoms, tmax=1e-8, steps=500)
    spins = atoms.get_initial_magnetic_moments()
    np.testing.assert_allclose(np.linalg.norm(spins, axis=1), moments, rtol=0, atol=1e-13)
    unit = spins / moments[:, None]
    # ground state: E = −(z/2)|J| per spin, every nearest-neighbour pair (anti)parallel
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(-3 * abs(J), abs=1e-9)
    half = np.rint(atoms.positions / A_SC).astype(int)
    sign = np.ones(len(atoms)) if J > 0 else (-1.0) ** half.sum(axis=1)
    aligned = unit * sign[:, None]
    np.testing.assert_allclose(aligned, np.broadcast_to(aligned[0], aligned.shape), atol=1e-5)
