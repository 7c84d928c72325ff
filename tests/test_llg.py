"""LLG and spin-lattice dynamics against analytic solutions."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.build import bulk

from ase_deepspin.dynamics import SpinLatticeDynamics, sib_step, thermal_field_std
from ase_deepspin.units import GAMMA_RAD_PER_FS_T, MU_B_EV_PER_T
from ase_deepspin.calculators.hamiltonian import BetheSlater, ShellExchange, SpinHamiltonian
from ase_deepspin.neighbors import build_neighbor_list
from ase_deepspin.spins import unit_vectors

GAMMA = GAMMA_RAD_PER_FS_T


def test_larmor_precession_frequency_and_spin_length():
    B = 2.0
    field = lambda s: np.broadcast_to([0.0, 0.0, B], s.shape)
    theta = 0.7
    s = np.array([[np.sin(theta), 0.0, np.cos(theta)]])
    dt, steps = 2.0, 25_000  # 0.0007 rad per step: Cayley's phase error (γBΔt)²/12 is 4e-8 relative
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
    dt = 0.5  # SIB's O(Δt²) error is 2e-7 relative here
    for n in range(1, 16_001):
        s = sib_step(s, field, dt, alpha=alpha)
        if n % 4_000 == 0:
            expected = np.tanh(alpha * GAMMA * B * n * dt / (1 + alpha**2) + np.arctanh(s0))
            assert abs(s[0, 2] - expected) <= 1e-6 * abs(expected)


@pytest.mark.parametrize("alpha", [pytest.param(0.01, marks=pytest.mark.slow), 1.0])  # weak damping: 10k steps
def test_langevin_statistics_for_two_different_moments(alpha):
    """Independent spins of 1 and 3 μB in one run reach ⟨s_z⟩ = coth x − 1/x, x = μB/(k_B T).

    Strong damping starts from aligned spins (relaxation towards the distribution); weak damping,
    whose relaxation takes thousands of steps, starts from the Boltzmann distribution itself and
    must keep it (a wrong noise strength drifts away within a relaxation time).
    """
    from ase.units import kB

    B, n = 10.0, 10_000
    T = MU_B_EV_PER_T * B / (3.0 * kB)  # x = 3 for 1 μB, 9 for 3 μB
    moments = np.repeat([1.0, 3.0], n // 2)
    rng = np.random.default_rng(1)
    field = lambda u: np.broadcast_to([0.0, 0.0, B], u.shape)
    dt = 0.05 / (GAMMA * B)  # 0.05 rad of precession per step
    relax_steps = int((1 + alpha**2) / (alpha * GAMMA * B) / dt)
    if alpha >= 0.1:
        s = np.tile([0.0, 0.0, 1.0], (n, 1))
        burn, sample = 5 * relax_steps, max(5 * relax_steps, 2000)
    else:  # cos θ by inverting the CDF of p(c) ∝ exp(x c) on [−1, 1]
        x = moments * MU_B_EV_PER_T * B / (kB * T)
        u = rng.uniform(size=n)
        c = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * x)) / x
        phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
        r = np.sqrt(1.0 - c**2)
        s = np.column_stack([r * np.cos(phi), r * np.sin(phi), c])
        burn, sample = relax_steps, 4 * relax_steps
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
    from ase_deepspin.calculators.hamiltonian import DMI, Anisotropy
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


# ------------------------------------------------------------------ thermostats against exact statistics
class HarmonicZeeman(Calculator):
    """Independent oscillators and spins in a field: E = ½ k Σ_i |R_i − R0_i|² − μ_B Σ_i B·S_i.

    F_i = −k (R_i − R0_i) (eV/Å); ω_i = −∂E/∂S_i = μ_B B (eV/μB), a field along which the spins of
    any moment have their exact Boltzmann statistics; every lattice degree of freedom is a harmonic
    oscillator with ⟨½ k x²⟩ = ⟨p²/2m⟩ = ½ k_B T. Atoms without a moment feel no field (no torque).
    """

    implemented_properties = ["energy", "free_energy", "forces", "magnetic_torques"]

    def __init__(self, reference_positions, k_eV_per_A2: float, field_T):
        super().__init__()
        self.reference, self.k, self.field_T = np.array(reference_positions), k_eV_per_A2, np.asarray(field_T, float)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions - self.reference
        spins = self.atoms.get_initial_magnetic_moments()
        energy = 0.5 * self.k * np.sum(x * x) - MU_B_EV_PER_T * np.sum(spins @ self.field_T)
        torques = np.where(spins.any(axis=1)[:, None], MU_B_EV_PER_T * self.field_T, 0.0)
        self.results = {"energy": energy, "free_energy": energy, "forces": -self.k * x, "magnetic_torques": torques}


def oscillators_with_spins(moments, n_plain: int, field_T, k_eV_per_A2: float = 1.0):
    """Fe atoms with spins of the given lengths (μB) along the field, then ``n_plain`` O atoms without
    spin, in a row 3 Å apart (no interactions: every atom is its own oscillator)."""
    n = len(moments) + n_plain
    atoms = Atoms(["Fe"] * len(moments) + ["O"] * n_plain, positions=3.0 * np.outer(np.arange(n), [1, 0, 0]))
    b = np.asarray(field_T, float) / np.linalg.norm(field_T)
    atoms.set_initial_magnetic_moments(np.concatenate([np.outer(moments, b), np.zeros((n_plain, 3))]))
    atoms.calc = HarmonicZeeman(atoms.positions, k_eV_per_A2, field_T)
    return atoms


def assert_within_standard_errors(samples: np.ndarray, expected: float, z: float = 4.0):
    """Mean of per-degree-of-freedom time averages ``samples`` [n] equals ``expected`` within z standard
    errors (the degrees of freedom are independent, so their time averages are independent draws)."""
    error = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - expected) < z * error, (samples.mean(), expected, error)


def test_spin_half_steps_on_a_moving_lattice_give_langevin_statistics_for_mixed_moments():
    """With the lattice moving (and thermostatted), the noise of the two spin half steps gives each spin
    ⟨ŝ·b̂⟩ = L(x) = coth x − 1/x, x = μB/(k_B T), for spins of 1 and 3 μB in the same run."""
    from ase.units import kB

    B = 10.0 * np.array([1.0, 2.0, 2.0]) / 3.0  # 10 T, off the axes
    n = 500
    moments = np.repeat([1.0, 3.0], n)
    atoms = oscillators_with_spins(moments, n_plain=50, field_T=B)
    T = MU_B_EV_PER_T * 10.0 / (3.0 * kB)  # x = 3 for 1 μB, 9 for 3 μB
    # 0.025 rad of precession per step (SIB's O(Δt) bias of ⟨ŝ·b̂⟩ stays below the standard error);
    # the spin relaxation time (1 + α²)/(α γ B) is 80 steps
    dt = 0.025 / (GAMMA * 10.0)
    md = SpinLatticeDynamics(atoms, dt_fs=dt, alpha=1.0, temperature_K=T, lattice_friction_per_fs=0.01,
                             rng=np.random.default_rng(4))
    md.run(400)
    b = B / 10.0
    sums = np.zeros(2 * n)

    def accumulate():
        sums[:] += atoms.get_initial_magnetic_moments()[:2 * n] @ b / moments

    md.attach(accumulate)
    md.run(800)
    assert np.all(atoms.get_initial_magnetic_moments()[2 * n:] == 0.0)  # no spin appears on the O atoms
    np.testing.assert_allclose(np.linalg.norm(atoms.get_initial_magnetic_moments()[:2 * n], axis=1), moments,
                               rtol=1e-12)
    for mu in (1.0, 3.0):
        x = mu * MU_B_EV_PER_T * 10.0 / (kB * T)
        assert_within_standard_errors(sums[moments == mu] / 800, 1 / np.tanh(x) - 1 / x)


def test_lattice_langevin_step_gives_equipartition_for_light_and_heavy_atoms():
    """Harmonic oscillators of Fe and O masses under the lattice bath: ⟨½ k x²⟩ and ⟨p²/2m⟩ are ½ k_B T
    per degree of freedom for both (the splitting V X O X V samples positions of a harmonic lattice exactly)."""
    from ase.units import kB

    k, T = 1.0, 300.0
    atoms = oscillators_with_spins(np.full(300, 2.0), n_plain=300, field_T=(0.0, 0.0, 1.0), k_eV_per_A2=k)
    reference = atoms.positions.copy()
    # friction near the oscillators' frequencies (0.013 and 0.025 rad/fs) decorrelates them fastest
    md = SpinLatticeDynamics(atoms, dt_fs=2.0, spins="frozen", temperature_K=T, lattice_friction_per_fs=0.01,
                             rng=np.random.default_rng(5))
    md.run(500)  # 1 ps: five amplitude relaxation times 2/friction
    potential, kinetic, steps = np.zeros((len(atoms), 3)), np.zeros((len(atoms), 3)), 4000

    def accumulate():
        x, p = atoms.positions - reference, atoms.get_momenta()
        potential[:] += 0.5 * k * x * x
        kinetic[:] += 0.5 * p * p / atoms.get_masses()[:, None]

    md.attach(accumulate)
    md.run(steps)
    for species in ("Fe", "O"):
        rows = np.array(atoms.get_chemical_symbols()) == species
        assert_within_standard_errors(potential[rows].ravel() / steps, 0.5 * kB * T)
        assert_within_standard_errors(kinetic[rows].ravel() / steps, 0.5 * kB * T)


# ------------------------------------------------------------------ state lives in the atoms
def exchange_atoms(seed=5):
    atoms = random_spin_atoms(seed=seed)
    atoms.rattle(0.05, seed=seed + 1)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(0.03, 0.2, 1.9, 3.5)})
    return atoms


@pytest.mark.parametrize("change", ["moments", "positions", "cell"])
def test_a_frozen_lattice_run_follows_moments_positions_and_cell_set_between_runs(change):
    """After moments, positions or the cell change between runs, the next run (with the analytic
    Hamiltonian's closed-form field) is the run of a fresh integrator from the new state."""
    atoms = exchange_atoms()
    md = SpinLatticeDynamics(atoms, dt_fs=0.5, alpha=0.1, lattice="frozen")
    md.run(5)
    if change == "moments":
        spins = atoms.get_initial_magnetic_moments()
        spins[::2] *= 0.5  # 1.1 μB on every other atom: their fields and precession double
        atoms.set_initial_magnetic_moments(spins)
    elif change == "positions":
        atoms.rattle(0.05, seed=11)
    else:
        atoms.set_cell(atoms.cell * 1.03, scale_atoms=True)
    reference = exchange_atoms()
    reference.set_cell(atoms.cell, scale_atoms=False)
    reference.set_positions(atoms.positions)
    reference.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments())
    md.run(20)
    SpinLatticeDynamics(reference, dt_fs=0.5, alpha=0.1, lattice="frozen").run(20)
    np.testing.assert_allclose(atoms.get_initial_magnetic_moments(), reference.get_initial_magnetic_moments(),
                               rtol=0, atol=1e-12)


def test_moments_set_between_runs_of_a_moving_lattice_are_kept():
    moments = np.repeat([1.0, 3.0], 4)
    atoms = oscillators_with_spins(moments, n_plain=2, field_T=(0.0, 3.0, 4.0))
    atoms.rattle(0.1, seed=1)
    spins = atoms.get_initial_magnetic_moments()
    spins[:8] = np.cross(spins[:8], [1.0, 0.0, 0.0])  # tilted away from the field: they precess
    atoms.set_initial_magnetic_moments(spins)
    md = SpinLatticeDynamics(atoms, dt_fs=1.0, alpha=0.1)
    md.run(3)
    atoms.set_initial_magnetic_moments(2.0 * atoms.get_initial_magnetic_moments())
    md.run(3)
    np.testing.assert_allclose(np.linalg.norm(atoms.get_initial_magnetic_moments()[:8], axis=1), 2.0 * moments,
                               rtol=1e-12)


def test_logfile_dash_is_standard_output_and_a_log_it_opened_is_closed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    atoms = random_spin_atoms(repeat=(1, 1, 1))
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(0.02,), radii=(2.485,))})
    SpinLatticeDynamics(atoms, dt_fs=1.0, lattice="frozen", logfile="-").run(2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["Mx", "My", "Mz"] and len(lines) == 4
    assert not (tmp_path / "-").exists()
    with SpinLatticeDynamics(atoms, dt_fs=1.0, lattice="frozen", logfile=tmp_path / "md.log") as md:  # a Path
        md.run(2)
    assert md.logfile_handle.closed
    assert len((tmp_path / "md.log").read_text().splitlines()) == 4


@pytest.mark.parametrize("friction", [0.0, 0.05])
def test_a_spin_lattice_step_costs_two_evaluations(friction):
    """The step's first kick and SIB predictor reuse the previous step's last evaluation: in steady state
    the calculator runs twice per step (it ran five times with spin half steps around the lattice step)."""
    from conftest import count_calculations

    atoms = spin_lattice_atoms()
    calls = count_calculations(atoms.calc)
    md = SpinLatticeDynamics(atoms, dt_fs=1.0, alpha=0.1, temperature_K=100.0 if friction else 0.0,
                             lattice_friction_per_fs=friction, rng=np.random.default_rng(0))
    md.run(1)
    calls["n"] = 0
    md.run(10)
    assert calls["n"] == 2 * 10


def test_spin_lattice_trajectory_frames_carry_their_energy_and_forces(tmp_path):
    """Each step ends at an evaluated state, so trajectory frames hold that state's energy and forces."""
    from ase.io import read

    atoms = spin_lattice_atoms()
    md = SpinLatticeDynamics(atoms, dt_fs=1.0, trajectory=str(tmp_path / "md.traj"), loginterval=2)
    md.run(4)
    md.close()
    frames = read(tmp_path / "md.traj", ":")
    assert len(frames) == 3
    for frame in frames:
        stored_energy, stored_forces = frame.get_potential_energy(), frame.get_forces()
        fresh = frame.copy()
        fresh.calc = spin_lattice_atoms().calc
        assert stored_energy == pytest.approx(fresh.get_potential_energy(), rel=1e-12)
        assert np.allclose(stored_forces, fresh.get_forces(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("field", [(0.0, 1.0), [[0.0, 0.0, 1.0]], (0.0, np.nan, 1.0)])
def test_a_field_that_is_not_a_3_vector_is_refused_when_the_dynamics_is_made(field):
    atoms = Atoms("Fe", positions=[[0, 0, 0]], cell=[10, 10, 10], pbc=True)
    atoms.set_initial_magnetic_moments([[0.0, 0.0, 2.0]])
    atoms.calc = SpinHamiltonian()
    with pytest.raises(ValueError, match="field_T must be a finite 3-vector"):
        SpinLatticeDynamics(atoms, dt_fs=1.0, field_T=field)
