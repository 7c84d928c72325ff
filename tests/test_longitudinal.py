"""Longitudinal spin dynamics: Boltzmann statistics in 3-D, closed-form relaxation, conservation, refusals."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from scipy.integrate import quad

import torch

from ase_deepspin import DeepSpinCalculator, DeepSpinModel, ModelConfig
from ase_deepspin.io.frames import read_frames
from ase_deepspin.dynamics import LongitudinalSpinLatticeDynamics, SpinLatticeDynamics
from ase_deepspin.units import K_B_EV_PER_K, MU_B_EV_PER_T
from ase_deepspin.dynamics.longitudinal import longitudinal_mobility
from ase_deepspin.calculators.hamiltonian import Landau, ShellExchange, SpinHamiltonian
from ase_deepspin.system import model_inputs
from conftest import SHARED_DATA, minus_gradient, with_random_baseline


class OnSiteLandau(Calculator):
    """E = Σ a(|S| − m)² + b(|S| − m)⁴ for independent moments, in numpy (fast enough for statistics)."""

    implemented_properties = ["energy", "forces", "magnetic_torques"]

    def __init__(self, a, b, center):
        super().__init__()
        self.a, self.b, self.center = a, b, center

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        spins = self.atoms.get_initial_magnetic_moments()
        length = np.linalg.norm(spins, axis=1)
        delta = length - self.center
        slope = 2 * self.a * delta + 4 * self.b * delta**3
        self.results = {"energy": float(np.sum(self.a * delta**2 + self.b * delta**4)),
                        "forces": np.zeros((len(spins), 3)),
                        "magnetic_torques": -slope[:, None] * spins / length[:, None]}


def gas(n, spins, calc):
    """n non-interacting moments (no neighbours: the calculators above ignore positions)."""
    atoms = Atoms(f"Fe{n}", positions=np.zeros((n, 3)))
    atoms.set_initial_magnetic_moments(spins)
    atoms.calc = calc
    return atoms


def boltzmann_moments(a, b, center, field_T, temperature_K):
    """⟨|S|⟩, Var|S| and ⟨S_z⟩ of P(S) ∝ exp(−[a δ² + b δ⁴ − μ_B B S_z]/kT) d³S, by quadrature.

    The angular integral is closed form: ∫ exp(x cos θ) dΩ = 4π sinh(x)/x, ⟨cos θ⟩ = coth x − 1/x.
    """
    kT = K_B_EV_PER_K * temperature_K
    h = MU_B_EV_PER_T * field_T / kT

    def weight(m):  # m² e^{−U/kT} sinh(hm)/(hm), scaled to stay finite
        return m**2 * np.exp(-(a * (m - center) ** 2 + b * (m - center) ** 4) / kT - h * m) * np.expm1(2 * h * m) / (2 * h * m)

    def langevin(x):
        return 1 / np.tanh(x) - 1 / x

    top = center + 10.0
    z = quad(weight, 0, top, limit=200)[0]
    m1 = quad(lambda m: m * weight(m), 0, top, limit=200)[0] / z
    m2 = quad(lambda m: m * m * weight(m), 0, top, limit=200)[0] / z
    sz = quad(lambda m: m * langevin(h * m) * weight(m), 0, top, limit=200)[0] / z
    return m1, m2 - m1**2, sz


@pytest.mark.slow
@pytest.mark.parametrize("alpha, longitudinal_damping, dt_fs", [(0.5, 0.05, 0.2), (1.0, 0.02, 0.5)])
def test_samples_boltzmann_in_three_dimensions(alpha, longitudinal_damping, dt_fs):
    """Moments of |S| and ⟨S_z⟩ within 1 % of the exact 3-D Boltzmann law (|S|² Jacobian included)."""
    a, b, center, field_T, temperature_K = 0.05, 0.05, 1.5, 200.0, 300.0
    n = 3000
    rng = np.random.default_rng(7)
    start = rng.normal(size=(n, 3))
    start *= center / np.linalg.norm(start, axis=1, keepdims=True)
    atoms = gas(n, start, OnSiteLandau(a, b, center))
    dyn = LongitudinalSpinLatticeDynamics(atoms, dt_fs, alpha=alpha, longitudinal_damping=longitudinal_damping,
                                          temperature_K=temperature_K, field_T=(0.0, 0.0, field_T),
                                          lattice="frozen", rng=rng)
    # steps per longitudinal relaxation time 1/(2aλ); Euler–Maruyama's bias of the variance, ~λ k Δt/2, is
    # then ~0.3 % (k the on-site stiffness, 2a plus the quartic's share at these fluctuations)
    relax_steps = int(1.0 / (longitudinal_mobility(longitudinal_damping) * 2 * a * dt_fs))
    dyn.run(3 * relax_steps)  # equilibrate
    lengths, sz = [], []
    for _ in range(80):
        dyn.run(relax_steps // 4)
        spins = atoms.get_initial_magnetic_moments()
        lengths.append(np.linalg.norm(spins, axis=1))
        sz.append(spins[:, 2])
    lengths, sz = np.concatenate(lengths), np.concatenate(sz)
    mean, var, mean_sz = boltzmann_moments(a, b, center, field_T, temperature_K)
    assert lengths.mean() == pytest.approx(mean, rel=0.01)
    assert lengths.var() == pytest.approx(var, rel=0.01)
    assert sz.mean() == pytest.approx(mean_sz, rel=0.01)


def test_zero_temperature_length_relaxes_as_closed_form():
    """dm/dt = −2aλ(m − m₀): the lengths decay exponentially to the on-site minimum, directions stay."""
    a, center, damping, dt_fs = 0.2, 1.2, 0.05, 0.2
    spins = np.array([[0.0, 0.0, 2.0], [0.3, 0.0, 0.0], [0.0, -0.7, 0.7]])
    atoms = gas(3, spins, OnSiteLandau(a, 0.0, center))
    dyn = LongitudinalSpinLatticeDynamics(atoms, dt_fs, longitudinal_damping=damping, lattice="frozen")
    steps = 400
    dyn.run(steps)
    rate = 2 * a * longitudinal_mobility(damping)
    start = np.linalg.norm(spins, axis=1)
    expected = center + (start - center) * np.exp(-rate * steps * dt_fs)
    got = atoms.get_initial_magnetic_moments()
    # Euler's (1 − rate Δt)^n against e^{−rate t}: O(rate² Δt t) relative to the remaining offset
    assert np.linalg.norm(got, axis=1) == pytest.approx(expected, rel=0.01)
    assert got / np.linalg.norm(got, axis=1)[:, None] == pytest.approx(spins / start[:, None], abs=1e-12)


def exchange_trimer(onsite=True):
    """Three Fe moments of different lengths on a triangle with exchange (and a Landau on-site term)."""
    atoms = Atoms("Fe3", positions=[[0, 0, 0], [2.5, 0, 0], [1.25, 2.165, 0]])
    atoms.set_initial_magnetic_moments([[1.0, 0.2, 0.3], [0.0, 1.4, -0.5], [-0.6, 0.1, 0.9]])
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(0.02,), radii=(2.5,))},
                                 onsite={"Fe": Landau(coefficients=(-0.1, 0.05))} if onsite else None,
                                 field_T=(0.0, 0.0, 30.0))
    return atoms


def energy_error(dt_fs, total_fs=200.0):
    atoms = exchange_trimer()
    dyn = LongitudinalSpinLatticeDynamics(atoms, dt_fs, lattice="frozen")
    e0, lengths = atoms.get_potential_energy(), np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1)
    worst = 0.0
    for _ in range(int(total_fs / dt_fs)):
        dyn.run(1)
        worst = max(worst, abs(atoms.get_potential_energy() - e0))
    assert np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1) == pytest.approx(lengths, rel=1e-13)
    return worst


def test_undamped_conserves_energy_to_second_order_and_keeps_lengths():
    """No damping or noise: |S| changes only by rotation (not at all) and the energy error is O(Δt²)."""
    coarse, fine = energy_error(1.0), energy_error(0.5)  # 0.36 and 0.18 rad/step at the strongest field
    assert coarse > 1e-9
    assert coarse / fine == pytest.approx(4.0, rel=0.25)


def test_damped_longitudinal_motion_lowers_the_energy():
    atoms = exchange_trimer()
    dyn = LongitudinalSpinLatticeDynamics(atoms, 0.5, alpha=0.1, longitudinal_damping=0.05, lattice="frozen")
    energies = []
    dyn.attach(lambda: energies.append(dyn.total_energy()))
    dyn.run(200)
    assert np.all(np.diff(energies) < 1e-9)
    # at the end the lengths sit where the on-site and Zeeman forces along S balance
    spins = atoms.get_initial_magnetic_moments()
    unit = spins / np.linalg.norm(spins, axis=1)[:, None]
    along = np.einsum("ij,ij->i", atoms.calc.get_magnetic_torques(atoms), unit)
    assert np.abs(along).max() < 0.1 * 0.1  # from ~0.1 eV/μB at the start


def test_without_longitudinal_damping_is_sib():
    """α_∥ = 0: the same trajectory, noise included, as SpinLatticeDynamics. With a moving lattice both take
    their fields from the calculator's torques (a frozen one would let SpinLatticeDynamics use the
    Hamiltonian's closed-form field, whose component along S changes SIB's rotations at O(Δt²))."""
    runs = []
    for cls, extra in ((SpinLatticeDynamics, {}), (LongitudinalSpinLatticeDynamics, {"longitudinal_damping": 0.0})):
        atoms = exchange_trimer()
        cls(atoms, 1.0, alpha=0.2, temperature_K=50.0, rng=np.random.default_rng(3), **extra).run(50)
        runs.append(atoms.get_initial_magnetic_moments())
    assert np.abs(runs[0] - exchange_trimer().get_initial_magnetic_moments()).max() > 0.1
    np.testing.assert_array_equal(runs[0], runs[1])


def test_refuses_calculators_that_do_not_determine_lengths():
    with pytest.raises(ValueError, match="on-site"):
        LongitudinalSpinLatticeDynamics(exchange_trimer(onsite=False), 1.0, longitudinal_damping=0.1)
    nio = Atoms("Ni2O2", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0.5]],
                cell=np.eye(3) * 4.17, pbc=True)
    nio.set_initial_magnetic_moments([[0, 0, 1.27], [0, 0, -1.27], [0, 0, 0], [0, 0, 0]])
    nio.calc = DeepSpinCalculator("nio")
    with pytest.raises(ValueError, match="do not determine the moment lengths of \\['Ni'\\]"):
        LongitudinalSpinLatticeDynamics(nio, 1.0, longitudinal_damping=0.1)


def test_rejects_bad_parameters():
    atoms = exchange_trimer()
    with pytest.raises(ValueError, match="longitudinal damping"):
        LongitudinalSpinLatticeDynamics(atoms, 1.0, longitudinal_damping=-1.0)
    # a temperature with only longitudinal damping is a bath
    LongitudinalSpinLatticeDynamics(atoms, 1.0, longitudinal_damping=0.1, temperature_K=10.0, lattice="frozen")


FE_DEFECT = SHARED_DATA / "fe-deltaspin" / "FCC_Fe_defect_iter-1"


@pytest.mark.skipif(not FE_DEFECT.is_dir(), reason="../shared/data/fe-deltaspin not present")
def test_full_torque_on_an_fe_frame_matches_finite_differences():
    """ω = −∂E/∂S along and across S, on the real defect frame holding the smallest moment (~0.03 μB),
    for an Fe model with the landau baseline and env_protection (the recipe of examples/fe_train.yaml)."""
    frames = read_frames(FE_DEFECT)
    frame = min(frames, key=lambda f: np.linalg.norm(f.spins, axis=1).min())
    atoms = Atoms(list(frame.symbols), positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    atoms.set_initial_magnetic_moments(frame.spins)
    lengths = np.linalg.norm(frame.spins, axis=1)
    smallest = int(np.argmin(lengths))
    assert lengths[smallest] < 0.1 < lengths.max() - lengths.min()
    config = ModelConfig(type_map=["Fe"], virtual_scale=[1.0], rcut=4.5, rcut_smth=3.5, sel=[60, 60],
                         neuron=[6, 12, 24], axis_neuron=4, fitting_neuron=[16, 16], seed=2, env_protection=0.5,
                         spin_baseline={"n_basis": 6, "onsite_order": 3, "form": "landau"})
    model = DeepSpinModel(config, dtype=torch.float64)
    model.set_environment_statistics([model_inputs(model, frame.positions, frame.cell, frame.pbc,
                                                   np.zeros(len(atoms), dtype=int), frame.spins)])
    with_random_baseline(model)
    atoms.calc = DeepSpinCalculator(model)
    torques = atoms.calc.get_magnetic_torques(atoms)
    rows = [smallest, int(np.argmax(lengths)), 5]

    def energy_of(spins):
        trial = atoms.copy()
        trial.set_initial_magnetic_moments(spins)
        trial.calc = atoms.calc
        return trial.get_potential_energy()

    numeric = minus_gradient(energy_of, frame.spins, 1e-5, rows=rows)
    unit = frame.spins[rows] / lengths[rows, None]
    along = np.einsum("ij,ij->i", torques[rows], unit)
    assert np.abs(along).min() > 1e-4  # the longitudinal part is there to be checked
    np.testing.assert_allclose(torques[rows], numeric[rows], rtol=1e-6, atol=1e-8)
    # a model that records no data ranges cannot say its lengths were determined; with this frame's, it can
    with pytest.raises(ValueError, match="no range recorded"):
        LongitudinalSpinLatticeDynamics(atoms, 0.2, longitudinal_damping=0.01, lattice="frozen")
    model.config.data_ranges = {"moment": [[float(lengths.min()), float(lengths.max())]], "shortest": [[2.0]]}
    atoms.calc = DeepSpinCalculator(model)
    LongitudinalSpinLatticeDynamics(atoms, 0.2, longitudinal_damping=0.01, lattice="frozen").run(2)
    assert not np.allclose(np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1), lengths, rtol=1e-9)


def test_afmd_builder_has_eight_parallel_and_four_antiparallel_nearest_neighbours():
    from ase.neighborlist import neighbor_list

    from ase_deepspin.build import afmd_order, fcc_fe_afmd

    atoms = fcc_fe_afmd(moment=1.3, repeat=(2, 2, 2))
    i, j = neighbor_list("ij", atoms, 0.8 * 3.5495)  # nearest neighbours at a/√2 = 2.51 Å
    spins = atoms.get_initial_magnetic_moments()
    cosines = np.einsum("ij,ij->i", spins[i], spins[j]) / 1.3**2
    assert np.bincount(i).tolist() == [12] * len(atoms)
    assert np.bincount(i[cosines > 0.99], minlength=len(atoms)).tolist() == [8] * len(atoms)
    assert np.bincount(i[cosines < -0.99], minlength=len(atoms)).tolist() == [4] * len(atoms)
    assert afmd_order(atoms) == pytest.approx(1.3)
    rng = np.random.default_rng(0)
    random = rng.normal(size=(len(atoms), 3))
    atoms.set_initial_magnetic_moments(random)
    assert afmd_order(atoms) < 0.5 * np.linalg.norm(random, axis=1).mean()
    with pytest.raises(ValueError, match="repeat\\[2\\] must be even"):
        fcc_fe_afmd(repeat=(2, 2, 1))


def test_tilted_spins_keep_their_lengths_and_tilt_uniformly_in_angle():
    from scipy.stats import kstest

    from ase_deepspin.build import tilt_spins

    rng = np.random.default_rng(3)
    spins = rng.normal(size=(4000, 3)) * rng.uniform(0.5, 2.0, (4000, 1))
    spins[:3] = 0.0  # non-magnetic atoms stay so
    turned = tilt_spins(spins, 60.0, rng=4)
    lengths = np.linalg.norm(spins, axis=1)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=1), lengths, rtol=1e-12, atol=1e-15)
    magnetic = lengths > 0
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", spins, turned)[magnetic] / lengths[magnetic] ** 2,
                                         -1.0, 1.0)))
    assert angle.max() < 60.0 and kstest(angle / 60.0, "uniform").pvalue > 1e-3
    # the azimuth about each spin is uniform: the tilts average out along any fixed direction across the spin
    across = turned[magnetic] - np.einsum("ij,ij->i", turned[magnetic], spins[magnetic])[:, None] \
        * spins[magnetic] / lengths[magnetic, None] ** 2
    assert np.linalg.norm(across.mean(axis=0)) < 4 * np.linalg.norm(across, axis=1).mean() / np.sqrt(magnetic.sum())
