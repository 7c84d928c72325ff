"""NEB with spins: interpolation contracts, ASE NEB at fixed spins, geodesic NEB over spins."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixAtoms
from ase.io import read
from ase.mep import NEB, NEBTools
from ase.optimize import FIRE, MDMin

from ase_deepspin.analysis.neb import (
    GeodesicNEB,
    NEBResults,
    SpinRelaxedCalculator,
    VelocityProjection,
    make_images,
)
from ase_deepspin.spins import geodesic_log, interpolate_spins, spin_angles
from ase_deepspin.calculators.hamiltonian import (
    Anisotropy,
    BetheSlater,
    ShellExchange,
    SpinHamiltonian,
)


class CurvedDoubleWell(Calculator):
    """E = A (u² − 1)² + B (y − c u²)² + ½ κ z², u = x/a, (x, y, z) = R_index − center (eV, Å).

    Minima at (±a, c, 0) with E = 0; the valley y = c u² carries E = A (u² − 1)², so the MEP bends
    and its saddle, at the origin, lies exactly A above the minima. The straight line between the
    minima passes A + B c² above them.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, A=0.5, B=2.0, a=1.0, c=0.6, kappa=1.0, index=0, center=(0.0, 0.0, 0.0)):
        super().__init__()
        self.A, self.B, self.a, self.c, self.kappa = A, B, a, c, kappa
        self.index, self.center = index, np.asarray(center, dtype=float)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x, y, z = self.atoms.positions[self.index] - self.center
        u = x / self.a
        valley = y - self.c * u**2
        forces = np.zeros((len(self.atoms), 3))
        forces[self.index] = [-(4 * self.A * u * (u**2 - 1) - 4 * self.B * valley * self.c * u) / self.a,
                     -2 * self.B * valley, -self.kappa * z]
        self.results = {"energy": self.A * (u**2 - 1) ** 2 + self.B * valley**2 + 0.5 * self.kappa * z**2,
                        "forces": forces}


def _with_spins(atoms, spins):
    atoms = atoms.copy()
    atoms.set_initial_magnetic_moments(np.asarray(spins, dtype=float))
    return atoms


# ------------------------------------------------------------------ interpolation and images
def test_spin_interpolation_is_geodesic_and_keeps_magnitudes():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 3))
    b = rng.normal(size=(5, 3))
    b *= (np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))[:, None]
    a[2] = b[2] = 0.0  # a non-magnetic atom stays without spin
    path = interpolate_spins(a, b, np.linspace(0, 1, 7))
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)
    np.testing.assert_allclose(np.linalg.norm(path, axis=2), np.broadcast_to(np.linalg.norm(a, axis=1), (7, 5)),
                               rtol=1e-13, atol=1e-14)
    assert not path[:, 2].any()
    # constant angular speed on each great circle, with the total angle between the ends
    unit = path / np.where(np.linalg.norm(path, axis=2, keepdims=True) > 0, np.linalg.norm(path, axis=2, keepdims=True), 1)
    steps = spin_angles(unit[:-1], unit[1:])
    total = spin_angles(unit[0], unit[-1])
    np.testing.assert_allclose(steps, np.broadcast_to(total / 6, steps.shape), atol=1e-12)
    # every intermediate spin lies in the plane of its two ends (a great circle, not a detour)
    normal = np.cross(a, b)
    assert np.abs(np.einsum("mij,ij->mi", path, normal)).max() < 1e-12


def test_antiparallel_spins_turn_about_the_given_axis():
    up, down = np.array([[0.0, 0.0, 2.0]]), np.array([[0.0, 0.0, -2.0]])
    path = interpolate_spins(up, down, [0.0, 0.25, 0.5, 1.0], rotation_axis=(1.0, 0.0, 0.0))
    np.testing.assert_allclose(path[2, 0], [0.0, -2.0, 0.0], atol=1e-12)  # x × z = −y
    np.testing.assert_allclose(path[1, 0], 2.0 * np.array([0.0, -np.sin(np.pi / 4), np.cos(np.pi / 4)]), atol=1e-12)
    assert np.isclose(np.linalg.norm(geodesic_log(up / 2, down / 2)), np.pi)
    with pytest.raises(ValueError, match="rotation_axis is parallel"):
        interpolate_spins(up, down, [0.5], rotation_axis=(0.0, 0.0, 1.0))


def test_bad_endpoints_give_clear_errors():
    base = Atoms("FeO", positions=[[0, 0, 0], [2, 0, 0]])
    good = _with_spins(base, [[0, 0, 2], [0, 0, 0]])
    other = Atoms("FeN", positions=[[0, 0, 0], [2, 0, 0]])
    with pytest.raises(ValueError, match="different chemical species"):
        make_images(good, _with_spins(other, [[0, 0, 2], [0, 0, 0]]), 5)
    with pytest.raises(ValueError, match="different numbers of atoms"):
        make_images(good, _with_spins(base + Atoms("O", [[4, 0, 0]]), np.zeros((3, 3))), 5)
    with pytest.raises(ValueError, match="spins missing on one end"):
        make_images(good, _with_spins(base, [[0, 0, 2], [0, 1, 0]]), 5)
    with pytest.raises(ValueError, match="final endpoint carries no spins"):
        make_images(good, base.copy(), 5)
    with pytest.raises(ValueError, match=r"non-collinear \(N, 3\)"):
        make_images(good, _with_spins(base, [2.0, 0.0]), 5)
    with pytest.raises(ValueError, match="at least 3 images"):
        make_images(good, good, 2)
    with pytest.raises(ValueError, match="'linear' or 'idpp'"):
        make_images(good, good, 5, method="spline")


# ------------------------------------------------------------------ ASE NEB at fixed spins
def test_ase_neb_with_fixed_spins_finds_the_analytic_barrier(tmp_path):
    """Climbing-image NEB on a bent double well: barrier A to 1e-4 eV, saddle image at the origin,
    spins untouched by the optimizer and stored in the trajectory."""
    well = {"A": 0.5, "B": 2.0, "a": 1.0, "c": 0.6}
    start = _with_spins(Atoms("Fe", positions=[[-1.0, 0.6, 0.0]]), [[2.0, 0.0, 0.0]])
    end = _with_spins(Atoms("Fe", positions=[[1.0, 0.6, 0.0]]), [[0.0, 2.0, 0.0]])
    # spins in the xy plane: the z anisotropy adds nothing, whatever direction each image carries
    images = make_images(start, end, 7, calculator=lambda: SpinHamiltonian(
        anisotropy={"Fe": Anisotropy(K=0.1, axis=(0, 0, 1))}, lattice=CurvedDoubleWell(**well)))
    spins_before = [im.get_initial_magnetic_moments().copy() for im in images]
    neb = NEB(images, k=1.0, climb=True, method="improvedtangent")
    traj = tmp_path / "neb.traj"
    with FIRE(neb, logfile=None, trajectory=str(traj)) as opt:
        assert opt.run(fmax=1e-3, steps=1000)
    results = NEBResults.from_images(images)
    assert abs(results.barrier - well["A"]) < 1e-4
    assert np.linalg.norm(results.saddle_image.positions[0, :2]) < 1e-2
    assert results.saddle_index == 3
    assert abs(results.fit_barrier - well["A"]) < 1e-3
    # the profile is ASE's: NEBTools' barriers and energy change, a fit through every image
    tools = NEBTools(images)
    assert results.fit_barrier == pytest.approx(tools.get_barrier(fit=True)[0], abs=1e-12)
    assert (results.barrier, results.reaction_energy) == pytest.approx(tools.get_barrier(fit=False), abs=1e-12)
    s, fitted = results.fit()
    on_images = np.isin(s, results.reaction_coordinate)
    assert on_images.sum() == len(images)
    np.testing.assert_allclose(fitted[on_images], results.energies, atol=1e-12)
    for image, before in zip(images, spins_before):
        assert np.array_equal(image.get_initial_magnetic_moments(), before)
    frames = read(traj, index="-7:")
    for frame, before in zip(frames, spins_before):
        np.testing.assert_allclose(frame.get_initial_magnetic_moments(), before)
    png = results.plot(tmp_path / "profile.png")
    assert png.stat().st_size > 0


def bethe_slater_pair_path():
    """Ends of a spin-flip path of an Fe pair in a double well, and its calculator.

    Returns (A, r0, w, exchange, start, end, calc): well depth A (eV), centre r0 and half-width w
    (Å) of the moving atom's double well; J(r) (Bethe–Slater) = 0 at r = δ/√γ = 4 Å, so the spins
    turn antiparallel before the top of the well.
    """
    A, r0, w = 0.1, 4.3, 1.0
    exchange = BetheSlater(alpha=0.5, gamma=0.25, delta=2.0, cutoff=6.0)
    pair = Atoms("Fe2", positions=[[0, 0, 0], [r0 - w, 0, 0]], constraint=FixAtoms([0]))
    start = _with_spins(pair, [[0, 0, 2.0], [0, 0, 2.0]])
    end = _with_spins(pair, [[0, 0, 2.0], [0, 0, -2.0]])
    end.positions[1, 0] = r0 + w
    calc = SpinHamiltonian(exchange={("Fe", "Fe"): exchange},
                           lattice=CurvedDoubleWell(A=A, a=w, c=0.0, index=1, center=(r0, 0, 0)))
    return A, r0, w, exchange, start, end, calc


def test_spin_relaxed_images_follow_the_spin_adiabatic_surface():
    """A pair whose exchange J(r) (Bethe–Slater) turns antiferromagnetic before the top of a double well:
    the spin-adiabatic profile is E_lat(r) − |J(r)|; with spins frozen parallel it would be E_lat − J."""
    A, r0, w, exchange, start, end, base = bethe_slater_pair_path()
    images = make_images(start, end, 7, rotation_axis=(1, 0, 0),
                         calculator=lambda: SpinRelaxedCalculator(base, tmax=1e-6))
    neb = NEB(images, k=0.5, climb=True, method="improvedtangent")
    with FIRE(neb, logfile=None) as opt:
        assert opt.run(fmax=1e-3, steps=1000)
    results = NEBResults.from_images(images)

    import torch

    r = np.linspace(r0 - w, r0 + w, 200001)
    J = exchange(torch.as_tensor(r)).numpy()
    adiabatic = A * (((r - r0) / w) ** 2 - 1) ** 2 - np.abs(J)
    assert abs(results.barrier - (adiabatic.max() - adiabatic[0])) < 1e-5
    frozen = A * (((r - r0) / w) ** 2 - 1) ** 2 - J
    assert abs((frozen.max() - frozen[0]) - results.barrier) > 1e-2  # frozen parallel spins: another barrier
    for image in images:  # relaxed spins: (anti)parallel as J's sign says, magnitudes kept
        s = image.get_initial_magnetic_moments()
        np.testing.assert_allclose(np.linalg.norm(s, axis=1), 2.0, rtol=1e-12)
        sign = np.sign(exchange(torch.tensor(image.positions[1, 0])).item())
        assert np.dot(s[0], s[1]) / 4.0 == pytest.approx(sign, abs=1e-6)


# ------------------------------------------------------------------ geodesic NEB over spins
def _chain(n, K, J):
    chain = Atoms(f"Fe{n}", positions=[[2.5 * i, 0, 0] for i in range(n)])
    calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J,), radii=(2.5,))},
                           anisotropy={"Fe": Anisotropy(K=K, axis=(0, 0, 1))})
    up = _with_spins(chain, np.tile([0.0, 0.0, 2.2], (n, 1)))
    down = _with_spins(chain, np.tile([0.0, 0.0, -2.2], (n, 1)))
    return up, down, calc


def test_geodesic_neb_reversal_over_uniaxial_barrier(tmp_path):
    """Two ferromagnetically coupled spins reverse coherently over E = −K Σ (ŝ·z)²: barrier K per spin,
    saddle with both spins at 90°, reached by the climbing image from a distorted initial band."""
    n, K = 2, 0.05
    up, down, calc = _chain(n, K, J=0.2)
    images = make_images(up, down, 8, calculator=calc, rotation_axis=(0, 1, 0))
    rng = np.random.default_rng(0)
    for image in images[1:-1]:  # start away from the MEP; 8 images: none starts at 90°
        s = image.get_initial_magnetic_moments() + rng.normal(scale=0.3, size=(n, 3))
        image.set_initial_magnetic_moments(2.2 * s / np.linalg.norm(s, axis=1, keepdims=True))
    band = GeodesicNEB(images, k=0.5, climb=True)
    with VelocityProjection(band, dt=1.0) as opt:
        assert opt.run(fmax=1e-5, steps=1000)
    results = band.get_results()
    assert abs(results.barrier / n / K - 1) < 1e-6
    saddle = results.saddle_image.get_initial_magnetic_moments()
    np.testing.assert_allclose(np.degrees(np.arccos(saddle[:, 2] / 2.2)), 90.0, atol=0.01)
    assert results.saddle_index == band.climbing + 1
    for image in images:
        np.testing.assert_allclose(np.linalg.norm(image.get_initial_magnetic_moments(), axis=1), 2.2, rtol=1e-12)
    assert np.array_equal(images[0].get_initial_magnetic_moments(), up.get_initial_magnetic_moments())
    assert np.array_equal(images[-1].get_initial_magnetic_moments(), down.get_initial_magnetic_moments())
    # the geodesic path length of a coherent reversal is π per spin, added in quadrature
    np.testing.assert_allclose(results.reaction_coordinate[-1], np.pi * np.sqrt(n), rtol=1e-3)
    # the image spacing is even (equal springs) up to the climbing image's freedom
    assert abs(results.fit_barrier / n / K - 1) < 1e-3
    # NEBTools cannot read a path over spheres off positions (they do not move): it plots the geodesic one
    assert results.plot(tmp_path / "reversal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_velocity_projection_is_mdmin_stepping_on_the_spheres():
    """From rest one step moves every coordinate by ½ dt² F and set_x puts the spins back on their
    spheres; a step that would move a spin further than maxstep is scaled to it."""
    up, down, calc = _chain(2, 0.05, J=0.2)

    def distorted_band():
        images = make_images(up, down, 5, calculator=calc, rotation_axis=(0, 1, 0))
        images[2].set_initial_magnetic_moments([[2.2 * np.sin(1.2), 0, 2.2 * np.cos(1.2)], [0, 2.2, 0]])
        return GeodesicNEB(images, k=0.5)

    for dt, maxstep in ((0.3, None), (100.0, 0.05)):
        opt = VelocityProjection(distorted_band(), dt=dt, maxstep=maxstep)
        assert isinstance(opt, MDMin) and opt.dt == dt and opt.maxstep == (maxstep or 0.1)
        x0, forces = opt.optimizable.get_x(), -opt.optimizable.get_gradient()
        step = 0.5 * dt**2 * forces
        largest = np.linalg.norm(step.reshape(-1, 3), axis=1).max()
        assert (largest < 0.1) == (maxstep is None)  # the second step is capped
        opt.step()
        moved = (x0 + step * min(1.0, opt.maxstep / largest)).reshape(-1, 3)
        np.testing.assert_allclose(opt.optimizable.get_x().reshape(-1, 3),
                                   moved / np.linalg.norm(moved, axis=1, keepdims=True), atol=1e-6 * opt.maxstep)
        for image in opt.optimizable.band.images:
            np.testing.assert_allclose(np.linalg.norm(image.get_initial_magnetic_moments(), axis=1), 2.2, rtol=1e-14)
    with pytest.raises(ValueError, match="positive"):
        VelocityProjection(distorted_band(), dt=-1.0)


def test_geodesic_neb_runs_with_an_ase_optimizer_and_rejects_unequal_magnitudes():
    up, down, calc = _chain(2, 0.05, J=0.2)
    images = make_images(up, down, 5, calculator=calc, rotation_axis=(0, 1, 0))
    images[2].set_initial_magnetic_moments([[2.2 * np.sin(1.2), 0, 2.2 * np.cos(1.2)], [0, 2.2, 0]])
    band = GeodesicNEB(images, k=0.5, climb=True)
    with FIRE(band, logfile=None) as opt:
        assert opt.run(fmax=1e-4, steps=500)
    assert abs(band.get_results().barrier / 2 - 0.05) < 1e-6
    bad = make_images(up, down, 5, calculator=calc)
    bad[2].set_initial_magnetic_moments(1.1 * bad[2].get_initial_magnetic_moments())
    with pytest.raises(ValueError, match="magnitudes differ"):
        GeodesicNEB(bad)


def test_geodesic_neb_with_lattice_matches_the_spin_adiabatic_barrier():
    """Spins and positions moved together: the climbing image finds the saddle of E(R, S), which for
    the pair of the spin-relaxed test lies on the adiabatic surface: same barrier, max of E_lat − |J|."""
    import torch

    A, r0, w, exchange, start, end, calc = bethe_slater_pair_path()
    images = make_images(start, end, 5, rotation_axis=(1, 0, 0), calculator=calc)
    band = GeodesicNEB(images, k=0.5, lattice=True, length_scale=1.0)
    with VelocityProjection(band, dt=0.5) as opt:
        opt.run(fmax=1e-3, steps=60)
        band.climb = True
        assert opt.run(fmax=3e-4, steps=400)
    r = np.linspace(r0 - w, r0 + w, 200001)
    adiabatic = A * (((r - r0) / w) ** 2 - 1) ** 2 - np.abs(exchange(torch.as_tensor(r)).numpy())
    results = band.get_results()
    assert abs(results.barrier - (adiabatic.max() - adiabatic[0])) < 1e-6
    saddle = results.saddle_image
    assert saddle.positions[1, 0] == pytest.approx(r[np.argmax(adiabatic)], abs=1e-3)
    s = saddle.get_initial_magnetic_moments()
    assert s[0] @ s[1] / 4.0 == pytest.approx(-1.0, abs=1e-6)  # antiferromagnetic where J < 0
    np.testing.assert_array_equal(images[0].positions, start.positions)
    np.testing.assert_array_equal(images[-1].positions, end.positions)
    np.testing.assert_array_equal(images[2].positions[0], [0, 0, 0])  # FixAtoms holds
