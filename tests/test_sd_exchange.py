"""The s–d exchange (Kondo-lattice) calculator: the contract, closed forms and symmetries."""

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

from ase_deepspin.calculators import check_spin_calculator
from ase_deepspin.calculators.sd_exchange import SdExchangeCalculator, fermi_occupations


def triangular(n=4, a=1.0, rattle=0.03, seed=0, symbol="H"):
    """n × n triangular lattice (spacing a, Å), periodic, random unit spins, positions rattled."""
    rng = np.random.default_rng(seed)
    cell = [[n * a, 0, 0], [n * a / 2, n * a * np.sqrt(3) / 2, 0], [0, 0, 10.0]]
    positions = np.array([[i * a + j * a / 2, j * a * np.sqrt(3) / 2, 0.0] for i in range(n) for j in range(n)])
    atoms = Atoms(f"{symbol}{n * n}", positions=positions + rng.normal(scale=rattle, size=(n * n, 3)), cell=cell,
                  pbc=True)
    spins = rng.normal(size=(n * n, 3))
    atoms.set_initial_magnetic_moments(spins / np.linalg.norm(spins, axis=1, keepdims=True))
    return atoms


def mermin(levels, n_electrons, kT):
    """Mermin free energy of levels at fixed electron number, computed here independently."""
    from scipy.optimize import brentq

    mu = brentq(lambda m: fermi_occupations(levels, m, kT).sum() - n_electrons, levels.min() - 5, levels.max() + 5,
                xtol=1e-15)
    f = fermi_occupations(levels, mu, kT)
    entropy = sum(x * np.log(x) for x in np.concatenate([f, 1 - f]) if x > 0)
    return float(f @ levels + kT * entropy)


@pytest.mark.parametrize("mode", [{"filling": 0.25}, {"filling": None, "chemical_potential_eV": -0.8}])
def test_forces_torques_and_stress_are_derivatives_of_the_energy(mode):
    calc = SdExchangeCalculator(hopping_eV=1.0, coupling_eV_per_muB=2.0, cutoff=1.3, cutoff_width=0.4,
                                smearing_eV=0.05, **mode)
    report = check_spin_calculator(calc, triangular(), rtol=1e-6)
    assert report["torques"] < 1e-6 and report["forces"] < 1e-6 and report["stress"] < 1e-6


def test_open_cluster_with_a_non_magnetic_atom():
    atoms = triangular(n=3, rattle=0.05, seed=1)
    atoms.pbc = False
    atoms[4].symbol = "He"
    spins = atoms.get_initial_magnetic_moments()
    spins[4] = 0.0
    atoms.set_initial_magnetic_moments(spins)
    calc = SdExchangeCalculator(coupling_eV_per_muB=1.5, cutoff=1.3, cutoff_width=0.4, filling=0.4,
                                smearing_eV=0.05, magnetic=["H"])
    check_spin_calculator(calc, atoms, rtol=1e-6)
    atoms.calc = calc
    assert np.all(calc.get_magnetic_torques(atoms)[4] == 0.0)


def test_without_coupling_the_energy_is_the_free_ring_band():
    """J = 0 on a ring of N sites: levels −2t cos(2πm/N), each twice (spin); no torques."""
    n, t, kT = 8, 0.7, 0.02
    atoms = Atoms(f"H{n}", positions=[[k * 1.0, 0, 0] for k in range(n)], cell=[n, 10, 10], pbc=True)
    atoms.set_initial_magnetic_moments(np.random.default_rng(2).normal(size=(n, 3)))
    atoms.calc = calc = SdExchangeCalculator(hopping_eV=t, coupling_eV_per_muB=0.0, cutoff=1.2, cutoff_width=0.1,
                                             filling=3 / 8, smearing_eV=kT)
    band = -2 * t * np.cos(2 * np.pi * np.arange(n) / n)
    expected = mermin(np.repeat(band, 2), 3 / 8 * 2 * n, kT)
    assert abs(atoms.get_potential_energy() - expected) < 1e-10
    assert np.abs(calc.get_magnetic_torques(atoms)).max() < 1e-12


def test_a_single_site_has_levels_plus_and_minus_J_S():
    """One isolated atom at μ = 0: Ω = −kT Σ± ln(1 + exp(∓J|S|/kT)), ω = J (f(−J|S|) − f(J|S|)) ŝ."""
    J, kT, spin = 0.8, 0.1, np.array([[0.3, -1.1, 0.5]])
    atoms = Atoms("H", positions=[[0, 0, 0]])
    atoms.set_initial_magnetic_moments(spin)
    atoms.calc = calc = SdExchangeCalculator(coupling_eV_per_muB=J, filling=None, chemical_potential_eV=0.0,
                                             smearing_eV=kT)
    s = np.linalg.norm(spin)
    omega = -kT * (np.logaddexp(0, J * s / kT) + np.logaddexp(0, -J * s / kT))
    assert abs(atoms.get_potential_energy() - omega) < 1e-12
    lower, upper = fermi_occupations(np.array([-J * s, J * s]), 0.0, kT)
    np.testing.assert_allclose(calc.get_magnetic_torques(atoms), J * (lower - upper) * spin / s, atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 0.7, np.pi / 2, 2.4, np.pi])
def test_a_dimer_at_half_filling_follows_the_closed_form(angle):
    """Two sites, unit spins at angle θ: levels ±sqrt(J² + t² ± 2Jt cos(θ/2)); two electrons fill the lower two."""
    t, J = 1.0, 0.6
    atoms = Atoms("H2", positions=[[0, 0, 0], [1.0, 0, 0]])
    atoms.set_initial_magnetic_moments([[0, 0, 1], [np.sin(angle), 0, np.cos(angle)]])
    atoms.calc = SdExchangeCalculator(hopping_eV=t, coupling_eV_per_muB=J, cutoff=1.2, cutoff_width=0.1,
                                      filling=0.5, smearing_eV=1e-3)
    c = np.cos(angle / 2)
    expected = -np.sqrt(J**2 + t**2 + 2 * J * t * c) - np.sqrt(J**2 + t**2 - 2 * J * t * c)
    assert abs(atoms.get_potential_energy() - expected) < 1e-9


def test_turning_the_spins_alone_changes_nothing_but_the_torques_direction():
    """No spin–orbit terms: E and F unchanged, ω → Rω when every spin turns by R, lattice fixed."""
    atoms = triangular(seed=3)
    calc = SdExchangeCalculator(coupling_eV_per_muB=1.2, cutoff=1.3, cutoff_width=0.4, filling=0.3, smearing_eV=0.05)
    atoms.calc = calc
    e0, f0, w0 = atoms.get_potential_energy(), atoms.get_forces(), calc.get_magnetic_torques(atoms)
    rot = Rotation.from_rotvec([0.4, -1.2, 0.9]).as_matrix()
    atoms.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments() @ rot.T)
    assert abs(atoms.get_potential_energy() - e0) < 1e-11 * abs(e0)
    np.testing.assert_allclose(atoms.get_forces(), f0, atol=1e-10)
    np.testing.assert_allclose(calc.get_magnetic_torques(atoms), w0 @ rot.T, atol=1e-10)


@pytest.mark.parametrize("options, message", [
    ({"filling": 0.5, "chemical_potential_eV": 0.0}, "exactly one"),
    ({"filling": None}, "exactly one"),
    ({"filling": 1.0}, "0 < filling < 1"),
    ({"smearing_eV": 0.0}, "smearing_eV"),
    ({"cutoff_width": 2.0}, "cutoff_width"),
    ({"hopping_eV": float("nan")}, "hopping_eV"),
])
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        SdExchangeCalculator(**options)


def test_spins_that_do_not_match_the_magnetic_elements_are_refused():
    atoms = triangular(n=2)
    atoms.calc = SdExchangeCalculator(magnetic=["He"])
    with pytest.raises(ValueError, match=r"non-magnetic atoms \(H\) carry spins"):
        atoms.get_potential_energy()
    atoms.calc = SdExchangeCalculator()
    spins = atoms.get_initial_magnetic_moments()
    spins[1] = 0.0
    atoms.set_initial_magnetic_moments(spins)
    with pytest.raises(ValueError, match=r"magnetic atoms with zero spin at indices \[1\]"):
        atoms.get_potential_energy()


def test_the_tetrahedral_order_is_the_lowest_at_quarter_filling():
    """On the triangular lattice at a quarter of the one-electron states filled (the example's oracle), the
    four-sublattice tetrahedral order lies below the ferromagnetic, 120° and stripe states; its neighbouring
    spins are 109.5° apart and its scalar chirality is the same on every up triangle."""
    from ase_deepspin.build import tetrahedral_spins, triangular_lattice

    size = (12, 12)
    atoms = triangular_lattice(size, a=2.5)
    n1, n2 = size
    ij = [(i, j) for i in range(n1) for j in range(n2)]
    tetra = tetrahedral_spins(size)
    states = {"ferromagnetic": np.tile([0.0, 0.0, 1.0], (len(ij), 1)),
              "120°": np.array([[np.cos(2 * np.pi * ((i - j) % 3) / 3), np.sin(2 * np.pi * ((i - j) % 3) / 3), 0]
                                for i, j in ij]),
              "stripe": np.array([[0.0, 0.0, 1.0 if i % 2 == 0 else -1.0] for i, j in ij]),
              "tetrahedral": tetra}
    energies = {}
    for name, spins in states.items():
        atoms.set_initial_magnetic_moments(spins)
        atoms.calc = SdExchangeCalculator(hopping_eV=1.0, coupling_eV_per_muB=2.0, cutoff=3.0, cutoff_width=0.3,
                                          filling=0.25, smearing_eV=0.01)
        energies[name] = atoms.get_potential_energy() / len(atoms)
    assert min(energies, key=energies.get) == "tetrahedral", energies
    from ase_deepspin.analysis.chirality import scalar_chirality

    site = {(i, j): k for k, (i, j) in enumerate(ij)}
    chirality = scalar_chirality(tetra, size)[0].ravel()
    np.testing.assert_allclose(chirality, chirality[0], atol=1e-12)
    assert abs(chirality[0]) > 0.7
    np.testing.assert_allclose(tetra[site[0, 0]] @ tetra[site[1, 0]], -1 / 3, atol=1e-12)
