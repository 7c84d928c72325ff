"""Exchange tensors, linear spin-wave theory and S(q, ω) against closed forms of the analytic Hamiltonian."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from conftest import small_model

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.analysis.exchange import ExchangeModel, compute_exchange
from ase_deepspin.analysis.magnons import (
    LinearSpinWaves,
    band_path,
    dynamical_structure_factor,
    magnon_dos,
    plot_magnon_bands,
    plot_structure_factor,
)
from ase_deepspin.build import nio_afm
from ase_deepspin.dynamics.llg import sib_step
from ase_deepspin.units import GAMMA_RAD_PER_FS_T, HBAR_EV_FS, MU_B_EV_PER_T
from ase_deepspin.calculators.hamiltonian import DMI, Anisotropy, ShellExchange, SpinHamiltonian

A = 2.5  # Å, lattice spacing
MOMENT = 2.0  # μB
S = MOMENT * MU_B_EV_PER_T / (HBAR_EV_FS * GAMMA_RAD_PER_FS_T)  # LSWT spin length of a 2 μB moment
J = 0.010  # eV
MEV_TOLERANCE = 1e-6


def chain(n_sites: int, directions) -> Atoms:
    atoms = Atoms(f"Fe{n_sites}", positions=np.arange(n_sites)[:, None] * [A, 0, 0], cell=[n_sites * A, 12, 12],
                  pbc=True)
    atoms.set_initial_magnetic_moments(MOMENT * np.asarray(directions, dtype=float))
    return atoms


def simple_cubic(afm: bool) -> Atoms:
    if afm:  # G-type order: the two-site cell of the rock-salt lattice
        atoms = Atoms("Fe2", positions=[[0, 0, 0], [A, 0, 0]], cell=A * np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]]),
                      pbc=True)
        atoms.set_initial_magnetic_moments([[0, 0, MOMENT], [0, 0, -MOMENT]])
    else:
        atoms = Atoms("Fe", positions=[[0, 0, 0]], cell=[A, A, A], pbc=True)
        atoms.set_initial_magnetic_moments([[0, 0, MOMENT]])
    return atoms


def exchange_only(J_eV, **extra) -> SpinHamiltonian:
    return SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J_eV,), radii=(A,))}, **extra)


def nearest_neighbour_check(model: ExchangeModel, J_eV: float, D_vectors=None):
    """Every pair is a nearest-neighbour pair with J_ij = J 1 (+ the DMI of the bond) to 1e-6 relative."""
    bonds = model.bond_vectors
    assert np.allclose(np.linalg.norm(bonds, axis=1), A, atol=1e-9)
    expected = J_eV * np.broadcast_to(np.eye(3), model.J.shape).copy()
    if D_vectors is not None:
        D = D_vectors(bonds / A)  # −ŝ_i^T J^a ŝ_j = D·(ŝ_i × ŝ_j): J^a_bc = −ε_abc D_a
        eps = np.zeros((3, 3, 3))
        eps[0, 1, 2] = eps[1, 2, 0] = eps[2, 0, 1] = 1.0
        eps[0, 2, 1] = eps[2, 1, 0] = eps[1, 0, 2] = -1.0
        expected -= np.einsum("abc,pa->pbc", eps, D)
    assert np.abs(model.J - expected).max() <= 1e-6 * abs(J_eV)


@pytest.mark.parametrize("afm", [False, True])
def test_chain_exchange_and_dispersion_equal_closed_forms(afm):
    sign = -1.0 if afm else 1.0
    atoms = chain(2, [[0, 0, 1], [0, 0, sign]])
    atoms.calc = exchange_only(sign * J)
    model = compute_exchange(atoms, (4, 1, 1))
    assert len(model.i) == 4  # two sites, two neighbours each
    nearest_neighbour_check(model, sign * J)
    assert np.abs(model.A).max() < 1e-6 * J

    q = np.linspace(-np.pi / A, np.pi / A, 13)[:, None] * [1.0, 0.0, 0.0]
    energies = LinearSpinWaves(model).energies(q)
    qa = q[:, 0] * A
    if afm:  # ħω = √(J_AB(0)² − J_AB(q)²)/S, J_AB(q) = 2|J| cos qa
        closed = 2 * J * np.abs(np.sin(qa)) / S
        expected = np.stack([closed, closed], axis=1)
    else:  # two-site cell of a ferromagnet: the band and its copy folded by π/a
        expected = np.stack([2 * J * (1 - np.cos(qa)), 2 * J * (1 + np.cos(qa))], axis=1) / S
    assert np.abs(np.sort(energies, axis=1) - np.sort(1e3 * expected, axis=1)).max() < MEV_TOLERANCE


def test_ferromagnetic_cube_with_anisotropy_dmi_and_a_second_shell():
    K, D, J2 = 0.0007, 0.002, -0.0015
    atoms = simple_cubic(afm=False)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J, J2), radii=(A, A * np.sqrt(2)))},
                                 dmi={("Fe", "Fe"): DMI(D, 2.6, rule="bulk")},
                                 anisotropy={"Fe": Anisotropy(K=K, axis=(0, 0, 1))})
    model = compute_exchange(atoms, (4, 4, 4))
    shells = model.shells()
    assert [len(s) for s in shells] == [3, 6]
    first = np.concatenate([shells[0], np.flatnonzero(np.isclose(model.distances, A) & ~np.isin(
        np.arange(len(model.i)), shells[0]))])
    nearest = ExchangeModel(model.cell, model.positions, model.moments, model.i[first], model.j[first],
                            model.R[first], model.J[first], model.A, model.atom_indices)
    nearest_neighbour_check(nearest, J, lambda r: D * r)
    second = np.isclose(model.distances, A * np.sqrt(2))
    assert np.abs(model.J[second] - J2 * np.eye(3)).max() <= 1e-6 * abs(J2)
    assert np.abs(model.A - K * (np.diag([0, 0, 1.0]) - np.eye(3) / 3)).max() <= 1e-6 * K
    # a ferromagnet is stationary with bulk DMI (Σ_j D_ij = 0); ħω = (J(0) − J(q) + 2K)/S, DMI adds
    # the non-reciprocal −2D Σ_α sin(q_α a) ŝ_α term, zero for q ⊥ ŝ = z
    rng = np.random.default_rng(0)
    q = rng.uniform(-np.pi / A, np.pi / A, size=(20, 3)) * [1, 1, 0]
    qa = q * A
    c = np.cos(qa)
    J_q = 2 * J * c.sum(1) + 4 * J2 * (c[:, 0] * c[:, 1] + c[:, 1] * c[:, 2] + c[:, 2] * c[:, 0])
    J_0 = 6 * J + 12 * J2
    expected = 1e3 * (J_0 - J_q + 2 * K) / S
    energies = LinearSpinWaves(model).energies(q)[:, 0]
    assert np.abs(energies - expected).max() < MEV_TOLERANCE


def test_g_type_antiferromagnetic_cube_equals_closed_form():
    atoms = simple_cubic(afm=True)
    atoms.calc = exchange_only(-J)
    model = compute_exchange(atoms, (3, 3, 3))
    nearest_neighbour_check(model, -J)
    rng = np.random.default_rng(1)
    q = rng.uniform(-np.pi / A, np.pi / A, size=(30, 3))
    q[:3] = [[0, 0, 0], [np.pi / A, np.pi / A, np.pi / A], [np.pi / A, 0, 0]]  # Γ, ordering vector, zone face
    J_ab = 2 * J * np.cos(q * A).sum(axis=1)
    closed = 1e3 * np.sqrt(np.maximum((6 * J) ** 2 - J_ab**2, 0.0)) / S
    energies = LinearSpinWaves(model).energies(q)
    assert np.abs(energies - closed[:, None]).max() < MEV_TOLERANCE


def dmi_chain_calculator(D):
    return SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J,), radii=(A,))},
                           dmi={("Fe", "Fe"): DMI(D, 2.6, rule="bulk")})


def test_dmi_spiral_goldstone_mode_at_its_ordering_vector():
    """Chain along x, J > 0 and bulk DMI D x̂: E/bond = −J cos θ + D sin θ is least at tan θ = −D/J,
    a spiral in the yz plane with k = θ/a. Chosen here with 8 sites per turn."""
    theta = -2 * np.pi / 8
    D = -J * np.tan(theta)
    calc = dmi_chain_calculator(D)
    # the tensors do not depend on the state: extract them at a ferromagnetic reference
    one = chain(1, [[0, 0, 1]])
    one.calc = calc
    model = compute_exchange(one, (5, 1, 1))
    nearest_neighbour_check(model, J, lambda r: D * r)

    k = np.array([theta / A, 0, 0])
    lswt = LinearSpinWaves(model, moments=[[0, MOMENT, 0]], ordering_vector=k, rotation_axis=(1, 0, 0))
    q = np.linspace(-np.pi / A, np.pi / A, 17)[:, None] * [1.0, 0.0, 0.0]
    # rotating frame: in-plane coupling √(J² + D²), out-of-plane J
    J_plane = np.hypot(J, D)
    cos = np.cos(q[:, 0] * A)
    closed = 1e3 * np.sqrt(2 * J_plane * (1 - cos) * 2 * (J_plane - J * cos)) / S
    assert np.abs(lswt.energies(q)[:, 0] - closed).max() < MEV_TOLERANCE
    # the Goldstone mode (rotation of the spiral about x) sits at the lab-frame ordering vector
    assert np.abs(lswt.lab_energies(np.array([k, -k]))).min(axis=1).max() < MEV_TOLERANCE
    assert np.abs(lswt.lab_energies(np.array([[0.3 / A, 0, 0]]))).min() > 1.0

    # the same spiral in its commensurate 8-site cell: a stationary state, and the folded spectrum
    turn = chain(8, np.stack([np.zeros(8), np.cos(theta * np.arange(8)), np.sin(theta * np.arange(8))], axis=1))
    turn.calc = calc
    assert np.abs(calc.get_magnetic_torques(turn)).max() < 1e-12
    folded = LinearSpinWaves(compute_exchange(turn, (2, 1, 1)))
    q0 = np.array([[0.1, 0.0, 0.0]])
    images = q0 + np.arange(8)[:, None] * [2 * np.pi / (8 * A), 0, 0]
    assert np.abs(np.sort(folded.energies(q0)[0]) - np.sort(lswt.energies(images)[:, 0])).max() < 1e-5


def test_rotating_frame_needs_tensors_symmetric_about_the_axis():
    one = chain(1, [[0, 0, 1]])
    one.calc = dmi_chain_calculator(0.005)
    model = compute_exchange(one, (5, 1, 1))
    with pytest.raises(ValueError, match="not symmetric under rotations"):
        LinearSpinWaves(model, moments=[[0, MOMENT, 0]], ordering_vector=(0.2, 0, 0), rotation_axis=(0, 1, 0))
    with pytest.raises(ValueError, match="rotation_axis"):
        LinearSpinWaves(model, moments=[[0, MOMENT, 0]], ordering_vector=(0.2, 0, 0))
    # any planar spiral about x is stationary here; one of the wrong pitch is a saddle: imaginary modes
    wrong = LinearSpinWaves(model, moments=[[0, MOMENT, 0]], ordering_vector=(0.3, 0, 0), rotation_axis=(1, 0, 0))
    assert wrong.energies(np.linspace(-1, 1, 21)[:, None] * [np.pi / A, 0, 0]).min() < -1.0


def test_a_state_that_is_not_stationary_is_refused():
    atoms = simple_cubic(afm=False)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J,), radii=(A,))},
                                 anisotropy={"Fe": Anisotropy(K=0.001, axis=(0, 0, 1))})
    model = compute_exchange(atoms, (3, 3, 3))
    with pytest.raises(ValueError, match="not a stationary state"):
        LinearSpinWaves(model, moments=[[MOMENT, 0, MOMENT]])


def test_errors_are_early_and_named():
    atoms = chain(1, [[0, 0, 1]])
    with pytest.raises(ValueError, match="no calculator"):
        compute_exchange(atoms, (4, 1, 1))
    atoms.calc = exchange_only(J)
    with pytest.raises(ValueError, match="three positive integers"):
        compute_exchange(atoms, (4, 1))
    with pytest.raises(ValueError, match="orientations"):
        compute_exchange(atoms, (4, 1, 1), orientations="all")
    model = compute_exchange(atoms, (4, 1, 1))
    with pytest.raises(ValueError, match="moments must be"):
        LinearSpinWaves(model, moments=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="frames must be"):
        dynamical_structure_factor(np.zeros((10, 3, 3)), np.zeros((2, 3)), 1.0, [[0, 0, 0]])


def test_ground_state_orientation_reproduces_a_bilinear_model_on_a_collinear_state():
    """With one orientation only, an isotropic model is still recovered exactly (the completion is isotropic)."""
    atoms = simple_cubic(afm=True)
    atoms.calc = exchange_only(-J)
    model = compute_exchange(atoms, (3, 3, 3), orientations="ground-state")
    nearest_neighbour_check(model, -J)


def test_s_q_omega_peaks_of_low_temperature_llg_fall_on_the_lswt_dispersion(tmp_path):
    n, dt_fs, steps = 24, 2.0, 2048
    atoms = chain(n, np.tile([0.0, 0.0, 1.0], (n, 1)))
    calc = exchange_only(J)
    atoms.calc = calc
    one = chain(1, [[0, 0, 1]])
    one.calc = calc
    lswt = LinearSpinWaves(compute_exchange(one, (4, 1, 1)))
    # a low-temperature state: small random tilts (~3°) about the ferromagnet, then undamped LLG
    rng = np.random.default_rng(0)
    unit = np.tile([0.0, 0.0, 1.0], (n, 1)) + 0.05 * rng.normal(size=(n, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    field = calc.frozen_lattice_field(atoms)
    frames = np.empty((steps, n, 3))
    for t in range(steps):
        frames[t] = unit
        unit = sib_step(unit, field, dt_fs)
    q = 2 * np.pi / (n * A) * np.arange(1, n // 2 + 1)[:, None] * [1.0, 0.0, 0.0]
    energies, intensity = dynamical_structure_factor(frames, atoms.positions, dt_fs, q)
    resolution = energies[1]
    assert resolution == pytest.approx(1e3 * 2 * np.pi * HBAR_EV_FS / (steps * dt_fs))
    peaks = energies[np.argmax(intensity, axis=1)]
    bands = lswt.energies(q)
    assert np.abs(peaks - bands[:, 0]).max() <= resolution

    distance = q[:, 0]
    for png in (plot_structure_factor(distance, energies, intensity, tmp_path / "sqw.png", bands_meV=bands),
                plot_magnon_bands(distance, bands, tmp_path / "bands.png", ticks=[(distance[0], "A")],
                                  dos=(energies, intensity.sum(0)), reference={"same": bands})):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_band_path_follows_the_cell_orientation_and_dos_counts_the_modes():
    from scipy.spatial.transform import Rotation

    fcc = bulk("Ni", "fcc", a=3.52)
    path = band_path(fcc)
    labels = [label for _, label in path["ticks"]]
    assert labels[0] == "Γ" and "X" in labels and "L" in labels
    b = 2 * np.pi / 3.52

    def point(path, label):
        distance = next(d for d, lab in path["ticks"] if lab == label)
        return path["q_cart"][np.flatnonzero(np.isclose(path["distance"], distance))[0]]

    # in a crystal turned by a rotation, the special points turn with it: X = b(1, 0, 0), L = b(½, ½, ½)
    # and their images under the cubic group, along the cube axes of the turned crystal
    rotation = Rotation.from_rotvec([0.3, -0.5, 0.9]).as_matrix()
    turned = fcc.copy()
    turned.set_cell(fcc.cell.array @ rotation.T, scale_atoms=True)
    for crystal, back in ((fcc, np.eye(3)), (turned, rotation)):
        path = band_path(crystal)
        assert np.allclose(np.sort(np.abs(point(path, "X") @ back)), [0, 0, b], atol=1e-9)
        assert np.allclose(np.abs(point(path, "L") @ back), b / 2, atol=1e-9)

    atoms = simple_cubic(afm=True)
    atoms.calc = exchange_only(-J)
    lswt = LinearSpinWaves(compute_exchange(atoms, (3, 3, 3)))
    energies, dos = magnon_dos(lswt, mesh=(8, 8, 8), sigma_meV=0.5)
    assert np.trapezoid(dos, energies) == pytest.approx(2.0, rel=1e-3)
    assert energies[np.argmax(dos)] == pytest.approx(1e3 * 6 * J / S, abs=1.5)  # van Hove peak at the band top


def test_lswt_equals_magnopy_on_an_antiferromagnet_with_dmi_and_anisotropy():
    """Optional cross-check against magnopy (PyPI), skipped when it is not installed."""
    magnopy = pytest.importorskip("magnopy")
    atoms = simple_cubic(afm=True)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(-J, -0.002), radii=(A, A * np.sqrt(2)))},
                                 anisotropy={"Fe": Anisotropy(K=0.0005, axis=(0, 0, 1))},
                                 dmi={("Fe", "Fe"): DMI(0.001, 2.6, rule="bulk")})
    model = compute_exchange(atoms, (3, 3, 3))
    lswt = LinearSpinWaves(model)
    # magnopy: H = ½ Σ_{ordered pairs} ŝ_i^T J ŝ_j + Σ_i ŝ_i^T A ŝ_i with normalised spins: J, A = −ours
    convention = magnopy.Convention(spin_normalized=True, multiple_counting=True, c21=1, c22=0.5)
    fractional = model.positions @ np.linalg.inv(model.cell)
    hamiltonian = magnopy.SpinHamiltonian(cell=model.cell, convention=convention, atoms={
        "names": ["Fe1", "Fe2"], "species": ["Fe", "Fe"], "spins": list(lswt.S), "g_factors": [2, 2],
        "positions": list(fractional)})
    for site in range(2):
        hamiltonian.add_21(alpha=site, parameter=-1e3 * model.A[site])
    for p in model.unique_pairs():
        hamiltonian.add_22(alpha=int(model.i[p]), beta=int(model.j[p]), nu=tuple(int(v) for v in model.R[p]),
                           parameter=-1e3 * model.J[p])
    reference = magnopy.LSWT(spinham=hamiltonian, spin_directions=lswt.unit)
    q = np.random.default_rng(2).uniform(-1.2, 1.2, size=(8, 3))
    theirs = np.array([np.sort(reference.omega(k, relative=False).real)[::-1] for k in q])
    assert np.abs(lswt.energies(q) - theirs).max() < MEV_TOLERANCE


def test_autograd_exchange_of_a_deepspin_model_equals_finite_differences():
    atoms = nio_afm()
    atoms.calc = DeepSpinCalculator(small_model())
    by_differences = compute_exchange(atoms, (3, 3, 2), method="finite-differences")
    exact = compute_exchange(atoms, (3, 3, 2), method="autograd")
    assert np.array_equal(exact.R, by_differences.R)
    # central differences with δ = 1e-4 rad: O(δ²) relative error
    assert np.abs(by_differences.J - exact.J).max() < 1e-6 * np.abs(exact.J).max()
    assert np.abs(by_differences.A - exact.A).max() < 1e-6 * np.abs(exact.A).max()
    with pytest.raises(ValueError, match="needs a calculator with spin_hessian_vector_products"):
        one = chain(1, [[0, 0, 1]])
        one.calc = exchange_only(J)
        compute_exchange(one, (4, 1, 1), method="autograd")


class HessianProductHamiltonian(SpinHamiltonian):
    """The analytic Hamiltonian offering the calculator method that compute_exchange looks for:
    (∂²E/∂S∂S)·v by central differences of its torques along v (step h μB), counted in ``calls``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def spin_hessian_vector_products(self, atoms, vectors, h=1e-5):
        self.calls += 1
        work = atoms.copy()
        spins = atoms.get_initial_magnetic_moments()

        def torques(s):
            work.set_initial_magnetic_moments(s)
            return self.get_magnetic_torques(work).copy()

        products = np.array([-(torques(spins + h * v) - torques(spins - h * v)) / (2 * h) for v in vectors])
        return products, torques(spins)


@pytest.mark.parametrize("afm", [False, True])
def test_any_calculator_with_hessian_products_is_used_and_gives_the_closed_form_tensors(afm):
    sign = -1.0 if afm else 1.0
    atoms = chain(2, [[0, 0, 1], [0, 0, sign]])
    atoms.calc = calc = HessianProductHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(sign * J,), radii=(A,))},
                                                  anisotropy={"Fe": Anisotropy(K=0.0007, axis=(0, 0, 1))})
    model = compute_exchange(atoms, (4, 1, 1))  # "auto": the products, one call per orientation
    assert calc.calls == 3
    nearest_neighbour_check(model, sign * J)
    assert np.abs(model.A - 0.0007 * (np.diag([0, 0, 1.0]) - np.eye(3) / 3)).max() <= 1e-6 * 0.0007
    np.testing.assert_array_equal(atoms.get_initial_magnetic_moments(), MOMENT * np.array([[0, 0, 1], [0, 0, sign]]))
    compute_exchange(atoms, (4, 1, 1), method="finite-differences")
    assert calc.calls == 3


def test_band_plot_keeps_imaginary_modes_in_view(tmp_path, monkeypatch):
    """Unstable (imaginary) modes, which LinearSpinWaves returns negative, are drawn below zero, not clipped."""
    from matplotlib.figure import Figure

    from ase_deepspin.analysis.magnons import plot_magnon_bands

    limits = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: limits.append(fig.axes[0].get_ylim()) or save(fig, *a, **k))
    x = np.linspace(0, 1, 20)
    plot_magnon_bands(x, np.stack([20 * np.sin(np.pi * x) - 5, 30 * np.sin(np.pi * x)], axis=1), tmp_path / "a.png")
    plot_magnon_bands(x, np.stack([20 * np.sin(np.pi * x) - 1e-9, 30 * np.sin(np.pi * x)], axis=1), tmp_path / "b.png")
    assert limits[0][0] <= -5 and limits[1][0] == 0  # round-off below zero is no imaginary mode
