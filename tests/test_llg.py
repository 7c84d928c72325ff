"""LLG and spin-lattice dynamics against analytic solutions."""

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.build import bulk

from ase_deepspin.dynamics import GAMMA_RAD_PER_FS_T, SpinLatticeDynamics, sib_step, thermal_field_std
from ase_deepspin.hamiltonian import BetheSlater, ShellExchange, SpinHamiltonian
from ase_deepspin.neighbors import build_neighbor_list
from ase_deepspin.spins import MU_B_EV_PER_T, unit_vectors

GAMMA = GAMMA_RAD_PER_FS_T


def test_larmor_precession_frequency_and_spin_length():
    B = 2.0
    field = lambda s: np.broadcast_to([0.0, 0.0, B], s.shape)
    theta = 0.7
    s = np.array([[np.sin(theta), 0.0, np.cos(theta)]])
    dt, steps = 0.5, 100_000
    for _ in range(steps):
        s = sib_step(s, field, dt)
    # ds/dt = −γ s × B: the spin turns anticlockwise about +z at angular frequency γB
    total = GAMMA * B * dt * steps
    phase = np.arctan2(s[0, 1], s[0, 0]) % (2 * np.pi)
    assert abs(phase - total % (2 * np.pi)) <= 1e-6 * total
    assert abs(np.linalg.norm(s) - 1.0) < 1e-12
    assert abs(s[0, 2] - np.cos(theta)) < 1e-12


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_damped_relaxation_in_a_field(alpha):
    B = 5.0
    field = lambda s: np.broadcast_to([0.0, 0.0, B], s.shape)
    s = np.array([[1.0, 0.0, -0.9]]) / np.hypot(1.0, 0.9)
    s0 = s[0, 2]
    dt = 0.2
    for n in range(1, 40_001):
        s = sib_step(s, field, dt, alpha=alpha)
        if n % 10_000 == 0:
            expected = np.tanh(alpha * GAMMA * B * n * dt / (1 + alpha**2) + np.arctanh(s0))
            assert abs(s[0, 2] - expected) <= 1e-6 * abs(expected)


@pytest.mark.parametrize("alpha", [0.01, 1.0])
def test_langevin_statistics_for_two_different_moments(alpha):
    """Independent spins of 1 and 3 μB in one run reach ⟨s_z⟩ = coth x − 1/x, x = μB/(k_B T)."""
    from ase.units import kB

    B, n = 10.0, 10_000
    T = MU_B_EV_PER_T * B / (3.0 * kB)  # x = 3 for 1 μB, 9 for 3 μB
    moments = np.repeat([1.0, 3.0], n // 2)
    rng = np.random.default_rng(1)
    s = np.tile([0.0, 0.0, 1.0], (n, 1))
    field = lambda u: np.broadcast_to([0.0, 0.0, B], u.shape)
    dt = 0.05 / (GAMMA * B)  # 0.05 rad of precession per step
    relax_steps = int((1 + alpha**2) / (alpha * GAMMA * B) / dt)
    burn, sample = 5 * relax_steps, max(5 * relax_steps, 2000)
    std = thermal_field_std(moments, alpha, T, dt)[:, None]
    sums = np.zeros(n)
    for step in range(burn + sample):
        s = sib_step(s, field, dt, alpha=alpha, noise=std * rng.standard_normal(s.shape))
        if step >= burn:
            sums += s[:, 2]
    mean = sums / sample
    for mu in (1.0, 3.0):
        x = mu * MU_B_EV_PER_T * B / (kB * T)
        assert mean[moments == mu].mean() == pytest.approx(1 / np.tanh(x) - 1 / x, rel=0.01)


def random_spin_atoms(seed=0, repeat=(2, 2, 2)):
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(repeat)
    atoms.arrays.pop("initial_magmoms", None)
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(len(atoms), 3))
    atoms.set_initial_magnetic_moments(2.2 * s / np.linalg.norm(s, axis=1, keepdims=True))
    return atoms


def test_spin_only_nve_conserves_energy_and_total_spin():
    atoms = random_spin_atoms()
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(0.02,), radii=(2.485,))})
    md = SpinLatticeDynamics(atoms, dt_fs=0.1, lattice="frozen")  # exchange fields ~10^3 T: 0.02 rad/step
    e0, m0 = md.total_energy(), atoms.get_initial_magnetic_moments().sum(axis=0)
    md.run(400)
    assert abs(md.total_energy() - e0) < 1e-6 * len(atoms)
    # SIB conserves both only to O(dt²) per unit time
    assert np.abs(atoms.get_initial_magnetic_moments().sum(axis=0) - m0).max() < 1e-4 * np.linalg.norm(m0)
    assert np.allclose(np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1), 2.2, atol=1e-12)


class VectorisedMorse(Calculator):
    """Morse pairs E = Σ_{i<j} D [(1 − e^{−a(r−r0)})² − 1] s(r), smoothly cut off (test lattice term).

    ASE's MorsePotential builds its neighbour list in Python (~40 ms a call); this one uses the
    package's compiled list, so picosecond runs fit in the test suite.
    """

    implemented_properties = ["energy", "energies", "forces", "stress"]

    def __init__(self, D=0.4, a=1.4, r0=2.48, r_on=3.6, cutoff=4.2):
        super().__init__()
        self.D, self.a, self.r0, self.r_on, self.cutoff = D, a, r0, r_on, cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        nl = build_neighbor_list(self.atoms.positions, self.atoms.cell.array, self.atoms.pbc, np.zeros((n, 3)),
                                 self.cutoff)
        d = self.atoms.positions[nl.neighbors] - self.atoms.positions[nl.centers] + nl.shifts @ self.atoms.cell.array
        r = np.linalg.norm(d, axis=1)
        x = np.exp(-self.a * (r - self.r0))
        e, de = self.D * ((1 - x) ** 2 - 1), 2 * self.D * self.a * (1 - x) * x
        u = np.clip((r - self.r_on) / (self.cutoff - self.r_on), 0, 1)
        sw, dsw = 1 - u**3 * (10 - 15 * u + 6 * u**2), -30 * u**2 * (1 - u) ** 2 / (self.cutoff - self.r_on)
        pair, dpair = 0.5 * e * sw, 0.5 * (de * sw + e * dsw)  # full list: each bond twice
        g = (dpair / r)[:, None] * d  # dE/dd
        forces = np.zeros((n, 3))
        np.add.at(forces, nl.centers, g)
        np.add.at(forces, nl.neighbors, -g)
        energies = np.zeros(n)
        np.add.at(energies, nl.centers, pair)
        virial = d.T @ g
        self.results = {"energy": energies.sum(), "energies": energies, "forces": forces,
                        "stress": (0.5 * (virial + virial.T) / self.atoms.get_volume()).flat[[0, 4, 8, 5, 2, 1]]}


def spin_lattice_atoms():
    atoms = random_spin_atoms(seed=2)
    atoms.rattle(0.02, seed=3)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(0.003, 0.2, 1.9, 3.5)}, lattice=VectorisedMorse(r_on=2.6, cutoff=2.75))
    return atoms


@pytest.mark.slow
def test_spin_lattice_nve_energy_drift_over_one_picosecond():
    atoms = spin_lattice_atoms()
    md = SpinLatticeDynamics(atoms, dt_fs=1.0)
    e0 = md.total_energy()
    energies = []
    md.attach(lambda: energies.append(md.total_energy()), interval=50)
    md.run(1000)
    assert max(abs(e - e0) for e in energies) / len(atoms) <= 1e-5


def test_nve_step_is_time_reversible():
    atoms = spin_lattice_atoms()
    start_pos, start_spins = atoms.positions.copy(), atoms.get_initial_magnetic_moments().copy()
    forward = SpinLatticeDynamics(atoms, dt_fs=1.0)
    forward.run(20)
    atoms.set_momenta(-atoms.get_momenta())
    backward = SpinLatticeDynamics(atoms, dt_fs=1.0, gamma=-GAMMA)  # reversed momenta and γ run time backwards
    backward.run(20)
    assert np.abs(atoms.positions - start_pos).max() < 1e-9
    # SIB's explicit predictor makes the spin half steps reversible to O(dt³) only
    assert np.abs(atoms.get_initial_magnetic_moments() - start_spins).max() < 1e-5


def test_trajectory_keeps_spins_and_logfile_has_magnetisation(tmp_path):
    from ase.io import read

    atoms = random_spin_atoms(repeat=(1, 1, 1))
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(0.02,), radii=(2.485,))})
    md = SpinLatticeDynamics(atoms, dt_fs=1.0, lattice="frozen", alpha=0.1, trajectory=str(tmp_path / "t.traj"),
                             logfile=str(tmp_path / "md.log"), loginterval=5)
    md.run(10)
    frames = read(tmp_path / "t.traj", index=":")
    assert len(frames) == 3
    assert np.allclose(frames[-1].get_initial_magnetic_moments(), atoms.get_initial_magnetic_moments())
    lines = (tmp_path / "md.log").read_text().splitlines()
    assert lines[0].split()[-3:] == ["Mx", "My", "Mz"] and len(lines) == 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(dt_fs=0.0), "time step"), (dict(dt_fs=1.0, alpha=-0.1), "alpha"),
    (dict(dt_fs=1.0, alpha=0.1, temperature_K=-1.0), "temperature"),
])
def test_bad_input(kwargs, message):
    atoms = random_spin_atoms(repeat=(1, 1, 1))
    atoms.calc = SpinHamiltonian()
    with pytest.raises(ValueError, match=message):
        SpinLatticeDynamics(atoms, **kwargs)


def test_zero_moment_on_a_magnetic_atom_is_an_error():
    atoms = random_spin_atoms(repeat=(1, 1, 1))
    spins = atoms.get_initial_magnetic_moments()
    spins[1] = 0.0
    atoms.set_initial_magnetic_moments(spins)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(0.02,), radii=(2.485,))})
    with pytest.raises(ValueError, match="zero spin"):
        SpinLatticeDynamics(atoms, dt_fs=1.0, lattice="frozen")


def test_closed_form_field_of_the_analytic_hamiltonian_equals_its_torques():
    from ase_deepspin.hamiltonian import DMI, Anisotropy
    from ase_deepspin.spins import tangent

    atoms = random_spin_atoms(seed=5)
    atoms.rattle(0.05, seed=6)
    calc = SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(0.03, 0.2, 1.9, 3.5)},
                           dmi={("Fe", "Fe"): DMI(0.004, 2.6)},
                           anisotropy={"Fe": Anisotropy(K=0.001, axis=(1, 1, 0), K_cubic=0.0005)}, field_T=(0, 1, 3))
    atoms.calc = calc
    unit, _ = unit_vectors(atoms.get_initial_magnetic_moments())
    from_torques = tangent(calc.get_magnetic_torques(atoms), unit) / MU_B_EV_PER_T  # includes the Zeeman field
    closed_form = tangent(calc.frozen_lattice_field(atoms)(unit), unit)
    assert np.abs(closed_form - tangent(from_torques, unit)).max() < 1e-9 * np.abs(closed_form).max()


def test_restart_from_a_trajectory_frame_continues_the_same_run(tmp_path):
    from ase.io import read

    def fresh():
        atoms = spin_lattice_atoms()
        atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(0.003, 0.2, 1.9, 3.5)},
                                     lattice=VectorisedMorse(r_on=2.6, cutoff=2.75))
        return atoms

    straight = fresh()
    SpinLatticeDynamics(straight, dt_fs=1.0).run(20)
    first = fresh()
    SpinLatticeDynamics(first, dt_fs=1.0, trajectory=str(tmp_path / "a.traj"), loginterval=10).run(10, progress=True)
    restarted = read(tmp_path / "a.traj", index=-1)
    restarted.calc = first.calc
    SpinLatticeDynamics(restarted, dt_fs=1.0).run(10)
    assert np.abs(restarted.positions - straight.positions).max() < 1e-12
    assert np.abs(restarted.get_momenta() - straight.get_momenta()).max() < 1e-12
    assert np.abs(restarted.get_initial_magnetic_moments() - straight.get_initial_magnetic_moments()).max() < 1e-12
