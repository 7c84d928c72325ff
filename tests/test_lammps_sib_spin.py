"""This package's LAMMPS plugin, ``fix sib/spin`` (lammps/), against SpinLatticeDynamics and closed forms.

Runs where examples/setup_lammps_deepspin.sh has built LAMMPS and the plugin (.ci/run builds them).
"""

import numpy as np
import pytest
from ase.md.velocitydistribution import thermalize_momenta
from conftest import invariant_model

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.dynamics.llg import SpinLatticeDynamics
from ase_deepspin.io.lammps import (
    lammps_route,
    printed_values,
    read_deepspin_dump,
    run_lammps,
    spin_lattice_input,
    write_spin_data,
)
from ase_deepspin.io.torchscript import write_lammps_model
from ase_deepspin.units import GAMMA_RAD_PER_FS_T, MU_B_EV_PER_T

ROUTE = lammps_route()
pytestmark = pytest.mark.skipif(ROUTE is None or ROUTE["sib_plugin"] is None,
                                reason="LAMMPS and fix sib/spin not built (bash examples/setup_lammps_deepspin.sh)")
K_B_LAMMPS_METAL = 8.617343e-5  # eV/K, LAMMPS's force->boltz in units metal, which the fix's baths use


def free_moments_input(n_side: int, moment: float, start, steps: int, dt_fs: float, alpha: float, field_T,
                       temperature_K: float = 0.0, seed: int = 1, thermo: int = 0, friction_per_ps: float = 0.0) -> str:
    """Non-interacting moments on a simple cubic grid (pair_style zero), fix sib/spin only; the lattice is
    frozen unless it has a friction (a lattice bath)."""
    lines = ["units metal", "atom_style spin", "atom_modify map array", "boundary p p p", "lattice sc 3.0",
             f"region box block 0 {n_side} 0 {n_side} 0 {n_side}", "create_box 1 box", "create_atoms 1 box",
             "mass 1 55.845", f"set group all spin/atom {moment!r} {' '.join(repr(float(v)) for v in start)}",
             "pair_style zero 2.0", "pair_coeff * *", f"plugin load {ROUTE['sib_plugin']}",
             f"fix dynamics all sib/spin alpha {alpha!r} temperature {temperature_K!r} seed {seed} "
             f"field {' '.join(repr(float(v)) for v in field_T)} friction {friction_per_ps!r} "
             f"lattice {'moving' if friction_per_ps > 0 else 'frozen'}",
             f"timestep {dt_fs / 1000.0!r}", "compute p all property/atom spx spy spz",
             "compute mean all reduce ave c_p[1] c_p[2] c_p[3]",
             "thermo_style custom step c_mean[1] c_mean[2] c_mean[3] temp", "thermo_modify format float %.17g",
             f"thermo {thermo or steps}", f"run {steps}",
             'print "MEAN_SPIN $(c_mean[1]:%.17g) $(c_mean[2]:%.17g) $(c_mean[3]:%.17g)"']
    return "\n".join(lines) + "\n"


def thermo_rows(output: str, columns: int) -> np.ndarray:
    """The thermo table: lines of ``columns`` numbers."""
    rows = []
    for line in output.splitlines():
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            continue
        if len(values) == columns:
            rows.append(values)
    return np.array(rows)


def test_damped_precession_of_one_spin_matches_the_closed_form(tmp_path):
    """A spin in a field B ẑ with Gilbert damping α: tan(θ/2) = tan(θ0/2) exp(−αγBt/(1+α²)), φ = γBt/(1+α²)."""
    alpha, field, dt_fs, steps = 0.1, 50.0, 0.1, 2000
    text = free_moments_input(1, 2.0, (1.0, 0.0, 0.0), steps, dt_fs, alpha, (0.0, 0.0, field))
    got = np.array(printed_values(run_lammps(text, tmp_path, ROUTE["lmp"], env=ROUTE["env"]), "MEAN_SPIN"))
    t = steps * dt_fs
    theta = 2 * np.arctan(np.exp(-alpha * GAMMA_RAD_PER_FS_T * field * t / (1 + alpha**2)))
    phi = GAMMA_RAD_PER_FS_T * field * t / (1 + alpha**2)
    expected = [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)]
    assert phi > 1.0 and expected[2] > 0.05  # it turned and it relaxed: the check can fail
    assert np.abs(got - expected).max() < 1e-5


def test_langevin_bath_gives_the_langevin_function(tmp_path):
    """Free moments μ in a field B at T: ⟨s_z⟩ = coth(x) − 1/x, x = μB/(k_B T), within 4 standard errors."""
    moment, field, temperature, n_side = 2.0, 10.0, 10.0, 10
    samples, every = 30, 1000  # 2 fs steps: samples 2 ps apart, above the relaxation time 1/(αγB) = 1.1 ps at α = 0.5
    text = free_moments_input(n_side, moment, (1.0, 0.0, 0.0), (samples + 5) * every, 2.0, 0.5,
                              (0.0, 0.0, field), temperature_K=temperature, seed=7, thermo=every)
    rows = thermo_rows(run_lammps(text, tmp_path, ROUTE["lmp"], env=ROUTE["env"]), 5)
    s_z = rows[rows[:, 0] >= 5 * every, 3]
    x = moment * MU_B_EV_PER_T * field / (K_B_LAMMPS_METAL * temperature)
    expected = 1 / np.tanh(x) - 1 / x
    error = s_z.std(ddof=1) / np.sqrt(len(s_z))
    assert len(s_z) == samples + 1 and error < 0.01
    assert abs(s_z.mean() - expected) < 4 * error + 2e-3, (s_z.mean(), expected, error)


def canted_start(nio, model, workdir):
    """The triclinic NiO cell with 300 K velocities, its data file and the model's .pth in ``workdir``."""
    atoms = nio.copy()
    atoms.wrap()
    thermalize_momenta(atoms, temperature_K=300.0, rng=np.random.default_rng(1))
    prism = write_spin_data(workdir / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, workdir / "model.pth")
    return atoms, prism


def sib_input(model, steps: int, **kwargs) -> str:
    return spin_lattice_input("system.data", "model.pth", ROUTE["plugin"], ROUTE["sib_plugin"], model.config.type_map,
                              skin=1.0, steps=steps, dt_fs=0.5, thermo=steps, **kwargs)


def test_lattice_bath_gives_equipartition(tmp_path):
    """Free atoms with friction 10/ps at 300 K: the mean kinetic temperature is 300 K within 3 %."""
    every = 200
    text = free_moments_input(10, 2.0, (1.0, 0.0, 0.0), 25 * every, 1.0, 0.0, (0.0, 0.0, 0.0), temperature_K=300.0,
                              seed=3, thermo=every, friction_per_ps=10.0)
    rows = thermo_rows(run_lammps(text, tmp_path, ROUTE["lmp"], env=ROUTE["env"]), 5)
    temperature = rows[rows[:, 0] >= 5 * every, 4]
    assert len(temperature) == 21 and abs(temperature.mean() / 300.0 - 1) < 0.03, temperature.mean()


@pytest.mark.parametrize("nprocs", [1, 2])
def test_spin_lattice_dynamics_in_lammps_follows_spin_lattice_dynamics(tmp_path, nio, nprocs):
    """The same model, start (canted spins, 300 K velocities, a triclinic cell) and scheme: after 100 steps of
    0.5 fs, LAMMPS's positions and spins equal SpinLatticeDynamics' to 1e-6, and its energy drifts alike."""
    model = invariant_model()
    atoms, prism = canted_start(nio, model, tmp_path)
    start = atoms.get_initial_magnetic_moments()
    steps, dt_fs = 100, 0.5
    output = run_lammps(sib_input(model, steps, dump_file="final.dump"), tmp_path, ROUTE["lmp"], nprocs=nprocs,
                        env=ROUTE["env"])
    thermo = [[float(v) for v in line.split()] for line in output.splitlines()
              if line.split() and line.split()[0] in ("0", str(steps)) and len(line.split()) == 6]
    got = read_deepspin_dump(tmp_path / "final.dump", prism)
    atoms.calc = DeepSpinCalculator(model)
    dynamics = SpinLatticeDynamics(atoms, dt_fs=dt_fs)
    e_start = dynamics.total_energy()
    dynamics.run(steps)
    drift = dynamics.total_energy() - e_start
    assert np.abs(atoms.get_initial_magnetic_moments() - start).max() > 0.05  # the spins turned
    assert np.abs(got["positions"] - atoms.positions).max() < 1e-6
    assert np.abs(got["moments"] - atoms.get_initial_magnetic_moments()).max() < 1e-6
    assert abs((thermo[1][5] - thermo[0][5]) - drift) < 1e-6 + 0.01 * abs(drift)


def test_a_run_continues_from_a_restart_file_as_if_it_had_not_stopped(tmp_path, nio):
    """20 steps, then a restart file and 20 more in a new LAMMPS, under -np 2: the state of 40 steps in one run."""
    model = invariant_model()
    atoms, prism = canted_start(nio, model, tmp_path)
    run_lammps(sib_input(model, 40, dump_file="straight.dump"), tmp_path, ROUTE["lmp"], nprocs=2, env=ROUTE["env"])
    run_lammps(sib_input(model, 20, restart_file="half.restart"), tmp_path, ROUTE["lmp"], nprocs=2, env=ROUTE["env"])
    run_lammps(sib_input(model, 20, continue_from="half.restart", dump_file="continued.dump"), tmp_path,
               ROUTE["lmp"], nprocs=2, env=ROUTE["env"])
    straight, continued = (read_deepspin_dump(tmp_path / f, prism) for f in ("straight.dump", "continued.dump"))
    assert np.abs(continued["moments"] - atoms.get_initial_magnetic_moments()).max() > 0.01
    for key in ("positions", "moments"):
        assert np.abs(continued[key] - straight[key]).max() < 1e-10, key
