"""The spin Hessian over directions (analysis.stability): closed forms of a dimer, exact products
against finite differences, and the contract (no state left behind, clear errors)."""

import numpy as np
import pytest
from ase import Atoms
from conftest import invariant_model

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.analysis.stability import spin_stability
from ase_deepspin.build import nio_afm
from ase_deepspin.calculators.hamiltonian import ShellExchange, SpinHamiltonian

J = 0.02  # eV, ferromagnetic (E = −J ŝ1·ŝ2)


def dimer(antiparallel: bool, length: float = 2.0) -> Atoms:
    atoms = Atoms("Fe2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[20, 20, 20], pbc=False)
    atoms.set_initial_magnetic_moments([[0.3, 0.4, length], [-0.3, -0.4, -length] if antiparallel
                                        else [0.3, 0.4, length]])
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J,), radii=(2.5,), tolerance=0.05)})
    return atoms


def test_a_ferromagnetic_dimer_is_a_minimum_with_two_zero_modes():
    result = spin_stability(dimer(antiparallel=False))
    assert np.allclose(result.eigenvalues, [0, 0, 2 * J, 2 * J], atol=1e-7)
    assert result.is_minimum() and result.max_torque < 1e-12


def test_an_antiparallel_ferromagnetic_dimer_is_a_maximum_along_its_relative_turn():
    atoms = dimer(antiparallel=True)
    result = spin_stability(atoms)
    assert np.allclose(result.eigenvalues, [-2 * J, -2 * J, 0, 0], atol=1e-7)
    assert not result.is_minimum()
    directions = result.unstable_directions(atoms)
    assert directions.shape == (2, 2, 3)
    spins = atoms.get_initial_magnetic_moments()
    assert np.allclose(np.einsum("kix,ix->ki", directions, spins), 0, atol=1e-12)  # tangent to the spins
    # turning along an unstable direction lowers the energy at second order: E(θ) − E(0) ≈ λθ²/2
    e0, theta = atoms.get_potential_energy(), 1e-3
    atoms.set_initial_magnetic_moments(spins + theta * directions[0])
    assert atoms.get_potential_energy() - e0 == pytest.approx(-J * theta ** 2, rel=1e-2)


def test_exact_products_agree_with_finite_differences():
    atoms = nio_afm(repeat=(1, 1, 2))
    rng = np.random.default_rng(2)
    spins = atoms.get_initial_magnetic_moments()
    spins[spins.any(axis=1)] += 0.2 * rng.normal(size=(int(spins.any(axis=1).sum()), 3))
    atoms.set_initial_magnetic_moments(spins)
    calc = DeepSpinCalculator(invariant_model())
    atoms.calc = calc
    exact = spin_stability(atoms).hessian

    class TorquesOnly:  # the same calculator without exact Hessian-vector products
        def get_magnetic_torques(self, atoms):
            return calc.get_magnetic_torques(atoms)

    atoms.calc = TorquesOnly()
    differences = spin_stability(atoms, step_rad=1e-4).hessian
    assert np.abs(differences - exact).max() < 1e-6 * np.abs(exact).max()
    assert np.array_equal(atoms.get_initial_magnetic_moments(), spins)  # the spins are put back


def test_bad_input_is_refused():
    atoms = dimer(antiparallel=False)
    with pytest.raises(ValueError, match="step_rad"):
        spin_stability(atoms, step_rad=1.0)
    atoms.set_initial_magnetic_moments(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no magnetic moment"):
        spin_stability(atoms)
    atoms.calc = None
    with pytest.raises(ValueError, match="no calculator"):
        spin_stability(atoms)
