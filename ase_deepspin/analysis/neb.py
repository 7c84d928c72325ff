"""Nudged elastic bands with spins: image lists for ASE's NEB, spin-relaxed images, geodesic NEB.

Three ways to a minimum-energy path (MEP) of a spin-lattice system:

1. **Fixed spins** (``make_images`` + ``ase.mep.NEB``): positions are interpolated by ASE
   (linear or IDPP) and each image carries its own spins, interpolated along great circles
   between the endpoints. ``ase.mep.NEB`` moves positions only; spins ride on the images as
   initial magnetic moments (``Atoms.copy`` keeps them, so trajectories store them).
2. **Spin-adiabatic** (``SpinRelaxedCalculator``): each image's spins are relaxed at its lattice
   configuration before every force evaluation, so ``ase.mep.NEB`` follows
   E_ad(R) = min_S E(R, S); its forces are −∂E/∂R at the relaxed spins (the spin gradient
   vanishes there, so these are the forces of the adiabatic surface).
3. **Geodesic NEB** (``GeodesicNEB``; Bessarab, Uzdin and Jónsson, Comput. Phys. Commun. 196,
   335 (2015)): a band in the product of spheres of the unit spins ŝ_i (optionally times the
   lattice positions). Per interior image ν, with generalized coordinates x = (ŝ, R/ℓ),

       τ+ = log_{x_ν}(x_{ν+1}),  τ− = −log_{x_ν}(x_{ν−1})      (geodesic "differences")
       τ  = improved tangent of Henkelman and Jónsson (J. Chem. Phys. 113, 9978 (2000)), normalised
       F  = −∇E projected on the tangent space of every sphere
       F_ν = F − (F·τ)τ + k (L_{ν,ν+1} − L_{ν−1,ν}) τ        (climbing image: F − 2 (F·τ) τ)

   where log_s(t) is the tangent vector at s pointing along the great circle to t with length
   the angle between them, and L the geodesic distance sqrt(Σ_i θ_i² + Σ_i |ΔR_i|²/ℓ²).
   The band is an ASE ``Optimizable`` whose coordinate update is followed by a retraction onto the
   spheres (renormalisation), so any ASE optimizer runs it; ``VelocityProjection`` is the
   optimizer of the paper (velocity Verlet with the velocity projected on the force), which is
   ASE's ``MDMin``.

``NEBResults`` holds the energy profile of a band; its fit, fitted barrier and figure are those of
ASE's ``NEBTools`` (``ase.utils.forcecurve``). The geometry on spheres (angles, geodesic log and
exp maps, great-circle interpolation) lives in :mod:`ase_deepspin.spins`.

=========  =======================  ==============================================
symbol     variable                 units
=========  =======================  ==============================================
ŝ          ``unit``                 unit spins [M, n_mag, 3] (M images)
|S|        ``moments``              μB
E          ``energies``             eV
−∂E/∂ŝ     spin force               eV/rad  (= |S| × torque, torque in eV/μB)
ℓ          ``length_scale``         Å per rad: weight of the lattice in distances
k          ``k``                    eV per (generalized unit)² (rad² or (Å/ℓ)²)
=========  =======================  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import MDMin
from ase.utils.abc import Optimizable
from ase.utils.forcecurve import ForceFit, fit_images, fit_raw

from ..spins import geodesic_exp, geodesic_log, interpolate_spins, tangent, unit_vectors
from ..system import magnetic_mask

__all__ = ["GeodesicNEB", "NEBResults", "SpinRelaxedCalculator", "VelocityProjection", "check_endpoints",
           "improved_tangents", "make_images", "neb_forces"]


# ----------------------------------------------------------------------------- endpoints and images
def check_endpoints(initial: Atoms, final: Atoms) -> None:
    """Raise ValueError unless two endpoints can bound one path: same atoms and species in the same
    order, same periodicity and cell, (N, 3) spins on both ends on the same atoms."""
    if len(initial) != len(final):
        raise ValueError(f"endpoints have different numbers of atoms: {len(initial)} and {len(final)}")
    differ = np.flatnonzero(initial.numbers != final.numbers)
    if len(differ):
        raise ValueError(f"endpoints have different chemical species (or atom order) at indices "
                         f"{differ[:10].tolist()}: {initial[differ[0]].symbol} vs {final[differ[0]].symbol}")
    if np.any(initial.pbc != final.pbc):
        raise ValueError(f"endpoints have different periodic boundary conditions: {initial.pbc} and {final.pbc}")
    if np.abs(initial.cell.array - final.cell.array)[initial.pbc].max(initial=0.0) > 1e-8:
        raise ValueError("endpoints have different cells in periodic directions (NEB keeps the cell fixed)")
    for name, atoms in (("initial", initial), ("final", final)):
        if not atoms.has("initial_magmoms"):
            raise ValueError(f"the {name} endpoint carries no spins: set (N, 3) moments in μB with "
                             "atoms.set_initial_magnetic_moments(...)")
        if atoms.get_initial_magnetic_moments().shape != (len(atoms), 3):
            raise ValueError(f"the {name} endpoint's spins must be non-collinear (N, 3) moments in μB, got "
                             f"shape {atoms.get_initial_magnetic_moments().shape}")
    has_a = magnetic_mask(initial.get_initial_magnetic_moments())
    has_b = magnetic_mask(final.get_initial_magnetic_moments())
    missing = np.flatnonzero(has_a != has_b)
    if len(missing):
        raise ValueError(f"spins missing on one end: atoms {missing[:10].tolist()} have a spin on one endpoint "
                         "and none on the other")


def _attach(images: list[Atoms], calculator) -> None:
    if calculator is None:
        return
    if isinstance(calculator, Calculator):
        for image in images:
            image.calc = calculator
    elif callable(calculator):
        for image in images:
            image.calc = calculator()
    else:
        raise TypeError("calculator must be an ASE Calculator (shared by all images) or a function "
                        "returning a new calculator for each image")


def make_images(initial: Atoms, final: Atoms, n_images: int, method: str = "linear", mic: bool = False,
                rotation_axis=None, calculator=None, apply_constraint: bool | None = None) -> list[Atoms]:
    """Band of ``n_images`` images (ends included) carrying spins, for ``ase.mep.NEB`` or ``GeodesicNEB``.

    Parameters
    ----------
    initial, final : endpoints with the same atoms in the same order and (N, 3) spins (μB).
    n_images : number of images including both ends (≥ 3).
    method : "linear" or "idpp" (ASE's image-dependent pair potential) for positions (Å).
    mic : interpolate positions with the minimum-image convention.
    rotation_axis : (3,) axis for spins that turn by 180° between the ends (see ``interpolate_spins``).
    calculator : None, one ASE calculator shared by all images (then
        ``NEB(..., allow_shared_calculator=True)``), or a function returning a new calculator per image.
    apply_constraint : passed to ``ase.mep.interpolate``.

    Returns copies: the ends equal the endpoints (positions, cell, spins); the interior images have
    interpolated positions and great-circle interpolated spins (magnitudes kept when equal).
    """
    from ase.mep import NEB, idpp_interpolate, interpolate

    check_endpoints(initial, final)
    if n_images < 3:
        raise ValueError(f"a band needs at least 3 images (2 ends and one to move), got {n_images}")
    if method not in ("linear", "idpp"):
        raise ValueError(f"interpolation method must be 'linear' or 'idpp', got {method!r}")
    images = [initial.copy() for _ in range(n_images - 1)] + [final.copy()]
    interpolate(images, mic=mic, apply_constraint=apply_constraint)
    if method == "idpp":
        idpp_interpolate(NEB(images, method="improvedtangent"), traj=None, log=None, mic=mic)
    spins = interpolate_spins(initial.get_initial_magnetic_moments(), final.get_initial_magnetic_moments(),
                              np.linspace(0.0, 1.0, n_images), rotation_axis)
    for image, s in zip(images[1:-1], spins[1:-1]):
        image.set_initial_magnetic_moments(s)
    _attach(images, calculator)
    return images


# ----------------------------------------------------------------------------- spin-relaxed images
class SpinRelaxedCalculator(Calculator):
    """Wraps a spin calculator so that every evaluation happens at relaxed spins (spin-adiabatic surface).

    Before computing, the spin directions of the atoms being evaluated are relaxed at their
    positions (magnitudes kept) with ``relax(atoms, tmax=..., steps=...)``, by default
    ``ase_deepspin.dynamics.minimize.relax_spins``; the relaxed spins are written back into the
    atoms (so NEB images and their trajectories carry them, and the next relaxation starts there).
    Energy, forces and stress are those of the wrapped calculator at the relaxed spins; as the
    transverse spin gradient vanishes there, forces are −dE_ad/dR of E_ad(R) = min_S E(R, S).
    Use one wrapper per image, e.g. ``make_images(..., calculator=lambda: SpinRelaxedCalculator(base))``
    (the wrapped calculator may be shared).

    Parameters
    ----------
    calc : spin calculator (contract of the package).
    tmax : convergence of the spin relaxation, max perpendicular torque in eV/μB.
    steps : maximum relaxation steps per evaluation.
    relax : relaxation function with the signature of ``relax_spins``.
    strict : raise when a relaxation does not converge (otherwise the last spins are used).
    kick_rad : each spin is first turned by this angle (rad) in a random direction, so that a
        relaxation never stays on a stationary point that is not a minimum (collinear states are
        stationary for exchange: an image that crossed a sign change of J would keep its order).
    rng : numpy Generator for the kicks (explicit, reproducible).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magnetic_torques"]

    def __init__(self, calc: Calculator, tmax: float = 1e-4, steps: int = 2000, relax=None, strict: bool = True,
                 kick_rad: float = 1e-3, rng: np.random.Generator | None = None):
        super().__init__()
        if tmax <= 0 or steps < 1 or kick_rad < 0:
            raise ValueError("tmax (eV/μB) must be positive, steps at least 1 and kick_rad (rad) not negative")
        self.kick_rad = float(kick_rad)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.calc = calc
        self.tmax = float(tmax)
        self.steps = int(steps)
        self.relax = relax
        self.strict = strict

    def _relax(self):
        if self.relax is not None:
            return self.relax
        from ..dynamics.minimize import relax_spins

        return relax_spins

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.calc
        if self.kick_rad > 0:
            unit, moments = unit_vectors(work.get_initial_magnetic_moments())
            kick = tangent(self.rng.standard_normal(unit.shape), unit)
            kick *= self.kick_rad / np.maximum(np.linalg.norm(kick, axis=1, keepdims=True), 1e-300)
            work.set_initial_magnetic_moments(geodesic_exp(unit, kick) * moments[:, None])
        converged = self._relax()(work, tmax=self.tmax, steps=self.steps)
        if self.strict and not converged:
            raise RuntimeError(f"spin relaxation did not reach tmax={self.tmax} eV/μB in {self.steps} steps")
        wanted = [p for p in ("energy", "free_energy", "forces", "magnetic_torques") if p in self.calc.implemented_properties]
        if "stress" in properties:
            wanted.append("stress")
        self.results = {p: np.copy(self.calc.get_property(p, work)) for p in wanted}
        self.results["energy"] = float(self.results["energy"])
        self.results.setdefault("free_energy", self.results["energy"])
        relaxed = work.get_initial_magnetic_moments()
        if atoms is not None:
            atoms.set_initial_magnetic_moments(relaxed)
        # the cache must describe the atoms as they are now, relaxed spins included
        self.atoms.set_initial_magnetic_moments(relaxed)


# ----------------------------------------------------------------------------- geodesic NEB: pure steps
def improved_tangents(forward: np.ndarray, backward: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Normalised tangents [M−2, D] of the interior images (Henkelman and Jónsson 2000).

    ``forward`` [M−2, D] points from image ν to ν+1, ``backward`` [M−2, D] from ν−1 to ν, both in
    the tangent space at image ν; ``energies`` [M] in eV.
    """
    e_prev, e, e_next = energies[:-2], energies[1:-1], energies[2:]
    up = (e_next > e) & (e > e_prev)
    down = (e_next < e) & (e < e_prev)
    d_next, d_prev = np.abs(e_next - e), np.abs(e_prev - e)
    big, small = np.maximum(d_next, d_prev), np.minimum(d_next, d_prev)
    w_forward = np.where(up, 1.0, np.where(down, 0.0, np.where(e_next > e_prev, big, small)))
    w_backward = np.where(up, 0.0, np.where(down, 1.0, np.where(e_next > e_prev, small, big)))
    # flat stretches (all energies equal) fall back to the bisector
    flat = (w_forward == 0) & (w_backward == 0)
    w_forward, w_backward = np.where(flat, 1.0, w_forward), np.where(flat, 1.0, w_backward)
    tau = w_forward[:, None] * forward + w_backward[:, None] * backward
    return tau / np.linalg.norm(tau, axis=1, keepdims=True)


def neb_forces(forces: np.ndarray, tangents: np.ndarray, distances: np.ndarray, k: float,
               climbing: int | None = None) -> np.ndarray:
    """Band forces [M−2, D] on interior images from true forces [M−2, D] (tangent to the spheres),
    unit tangents [M−2, D], distances [M−1] between neighbouring images and spring constant ``k``.

    ``climbing`` (interior index, or None) feels the true force with its tangential part inverted.
    """
    parallel = np.einsum("ij,ij->i", forces, tangents)[:, None]
    band = forces - parallel * tangents + k * (distances[1:] - distances[:-1])[:, None] * tangents
    if climbing is not None:
        band[climbing] = forces[climbing] - 2.0 * parallel[climbing] * tangents[climbing]
    return band


# ----------------------------------------------------------------------------- geodesic NEB: classes
class GeodesicNEB:
    """Geodesic nudged elastic band over spins (and optionally positions), for any spin calculator.

    Parameters
    ----------
    images : band with ends, e.g. from ``make_images``; each image needs a spin calculator (one
        calculator may be shared: an image is evaluated again whenever its spins or positions
        change; the calculators' settings must not change during a run). Spin
        magnitudes must be equal in all images (they are kept; directions move).
    k : spring constant, eV per generalized unit² (rad² for spins).
    climb : climbing image (the highest interior image climbs to the saddle).
    lattice : also move positions (Å) of the interior images; the cell stays fixed.
    length_scale : ℓ, Å per rad: positions enter distances and tangents as R/ℓ.
    rotation_axis : axis for spins at 180° from their neighbour image (see ``interpolate_spins``).

    Attributes after ``get_forces()``: ``energies`` [M] (eV), ``tangents``, ``true_forces``.
    Run it with ``VelocityProjection(band).run(fmax=...)`` or any ASE optimizer; ``fmax`` compares
    per-spin forces (eV/rad) and per-atom lattice forces (eV/Å × ℓ). ``get_results()`` gives the profile.

    Example
    -------
    >>> images = make_images(up, down, 9, calculator=SpinHamiltonian(anisotropy=...))
    >>> band = GeodesicNEB(images, climb=True)
    >>> VelocityProjection(band).run(fmax=1e-4)
    >>> band.get_results().barrier
    """

    def __init__(self, images: list[Atoms], k: float = 1.0, climb: bool = False, lattice: bool = False,
                 length_scale: float = 1.0, rotation_axis=None):
        if len(images) < 3:
            raise ValueError(f"a band needs at least 3 images, got {len(images)}")
        check_endpoints(images[0], images[-1])
        for i, image in enumerate(images):
            if image.calc is None:
                raise ValueError(f"image {i} has no calculator")
            check_endpoints(images[0], image)
        if k <= 0 or length_scale <= 0:
            raise ValueError("spring constant k and length_scale (Å/rad) must be positive")
        moments = np.array([unit_vectors(im.get_initial_magnetic_moments())[1] for im in images])
        if np.abs(moments - moments[0]).max() > 1e-8 * max(1.0, moments.max()):
            raise ValueError("spin magnitudes differ between images: geodesic NEB keeps |S| fixed")
        self.images = images
        self.k = float(k)
        self.climb = climb
        self.lattice = lattice
        self.length_scale = float(length_scale)
        self.rotation_axis = rotation_axis
        self.moments = moments[0]
        self.magnetic = magnetic_mask(images[0].get_initial_magnetic_moments())
        if not self.magnetic.any():
            raise ValueError("no atom carries a spin: geodesic NEB needs (N, 3) spins in μB")
        self.n_mag = int(self.magnetic.sum())
        self.natoms = len(images[0])
        self.energies = None
        self.true_forces = None
        self.tangents = None
        self.distances = None
        self.climbing = None
        self._end_results = [self._evaluate(images[0]), self._evaluate(images[-1])]
        self._interior = [(None, None)] * (len(images) - 2)  # (state key, evaluation) per interior image

    @property
    def nimages(self) -> int:
        return len(self.images)

    # -------------------------------------------------------------- coordinates
    def _unit(self, image: Atoms) -> np.ndarray:
        return unit_vectors(image.get_initial_magnetic_moments()[self.magnetic])[0]

    def get_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit spins [M, n_mag, 3] of the magnetic atoms and positions/ℓ [M, N, 3] of all images."""
        unit = np.array([self._unit(im) for im in self.images])
        scaled = np.array([im.positions for im in self.images]) / self.length_scale
        return unit, scaled

    def set_coordinates(self, unit: np.ndarray, scaled: np.ndarray | None = None) -> None:
        """Set interior images from unit spins [M−2, n_mag, 3] (renormalised) and positions/ℓ [M−2, N, 3]."""
        unit, _ = unit_vectors(unit.reshape(-1, 3))
        unit = unit.reshape(self.nimages - 2, self.n_mag, 3)
        for image, u, i in zip(self.images[1:-1], unit, range(self.nimages - 2)):
            spins = np.zeros((self.natoms, 3))
            spins[self.magnetic] = u * self.moments[self.magnetic, None]
            image.set_initial_magnetic_moments(spins)
            if self.lattice and scaled is not None:
                image.set_positions(scaled[i] * self.length_scale)

    def _differences(self, unit: np.ndarray, scaled: np.ndarray):
        """Forward [M−1, D] (at the start image of each segment) and backward [M−1, D] (at its end)
        displacements in generalized coordinates, and segment lengths [M−1]."""
        m = self.nimages
        forward_spin = geodesic_log(unit[:-1], unit[1:], self.rotation_axis).reshape(m - 1, -1)
        backward_spin = -geodesic_log(unit[1:], unit[:-1], self.rotation_axis).reshape(m - 1, -1)
        if self.lattice:
            step = (scaled[1:] - scaled[:-1]).reshape(m - 1, -1)
            forward = np.hstack([forward_spin, step])
            backward = np.hstack([backward_spin, step])
        else:
            forward, backward = forward_spin, backward_spin
        return forward, backward, np.linalg.norm(forward, axis=1)

    # -------------------------------------------------------------- physics
    def _evaluate(self, image: Atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and true generalized force [D] (spin part tangent, eV/rad; lattice eV/Å × ℓ)."""
        energy = image.get_potential_energy()
        torques = np.asarray(image.calc.get_property("magnetic_torques", image))[self.magnetic]
        unit = self._unit(image)
        spin_force = tangent(torques, unit) * self.moments[self.magnetic, None]
        parts = [spin_force.ravel()]
        if self.lattice:
            parts.append(image.get_forces().ravel() * self.length_scale)
        return energy, np.concatenate(parts)

    def _evaluate_interior(self) -> list[tuple[float, np.ndarray]]:
        """``_evaluate`` of each interior image, redone only when its spins or positions changed: ASE's
        optimizers ask for the gradient several times per step, and a calculator shared by the
        images keeps the results of the last one only."""
        for n, image in enumerate(self.images[1:-1]):
            key = image.get_initial_magnetic_moments().tobytes() + image.positions.tobytes()
            if self._interior[n][0] != key:
                self._interior[n] = (key, self._evaluate(image))
        return [evaluation for _, evaluation in self._interior]

    def get_forces(self) -> np.ndarray:
        """Band forces of the interior images [M−2, D] (D = 3 n_mag, + 3 N with the lattice)."""
        evaluated = self._evaluate_interior()
        self.energies = np.array([self._end_results[0][0], *[e for e, _ in evaluated], self._end_results[1][0]])
        self.true_forces = np.array([self._end_results[0][1], *[f for _, f in evaluated], self._end_results[1][1]])
        forward, backward, self.distances = self._differences(*self.get_coordinates())
        self.tangents = improved_tangents(forward[1:], backward[:-1], self.energies)
        self.climbing = int(np.argmax(self.energies[1:-1])) if self.climb else None
        return neb_forces(self.true_forces[1:-1], self.tangents, self.distances, self.k, self.climbing)

    def get_residual(self) -> float:
        """Largest per-spin (eV/rad) or per-atom lattice force on the band after ``get_forces()``."""
        return float(np.linalg.norm(self.get_forces().reshape(-1, 3), axis=1).max())

    # -------------------------------------------------------------- ASE plumbing
    def __ase_optimizable__(self) -> Optimizable:
        return _GeodesicNEBOptimizable(self)

    def iterimages(self):
        """Copies of the images with spins and single-point energies (and forces): for trajectories."""
        for i, image in enumerate(self.images):
            copy = image.copy()
            results = {"energy": self.energies[i]} if self.energies is not None else {}
            if self.energies is not None and self.lattice:
                results["forces"] = self.true_forces[i, 3 * self.n_mag:].reshape(-1, 3) / self.length_scale
            copy.calc = SinglePointCalculator(copy, **results)
            yield copy

    def get_results(self) -> NEBResults:
        """Energies, reaction coordinate (geodesic length, generalized units) and slopes of the band."""
        self.get_forces()
        forward, backward, distances = self._differences(*self.get_coordinates())
        # slopes at the ends along the segment leaving/entering them; interior along the band tangent
        tangents = np.vstack([forward[:1] / distances[0], self.tangents, backward[-1:] / distances[-1]])
        slopes = -np.einsum("ij,ij->i", self.true_forces, tangents)
        return NEBResults(energies=self.energies.copy(), reaction_coordinate=np.concatenate([[0.0], np.cumsum(distances)]),
                          slopes=slopes, images=list(self.iterimages()),
                          coordinate_label="geodesic path length (rad" + (", Å/ℓ)" if self.lattice else ")"))


class _GeodesicNEBOptimizable(Optimizable):
    """Interior unit spins (then positions/ℓ) as flat coordinates; set_x retracts onto the spheres."""

    def __init__(self, band: GeodesicNEB):
        self.band = band

    def ndofs(self) -> int:
        return (self.band.nimages - 2) * 3 * (self.band.n_mag + (self.band.natoms if self.band.lattice else 0))

    def _split(self, x: np.ndarray):
        b = self.band
        x = x.reshape(b.nimages - 2, -1)
        unit = x[:, :3 * b.n_mag].reshape(b.nimages - 2, b.n_mag, 3)
        scaled = x[:, 3 * b.n_mag:].reshape(b.nimages - 2, b.natoms, 3) if b.lattice else None
        return unit, scaled

    def get_x(self) -> np.ndarray:
        unit, scaled = self.band.get_coordinates()
        parts = [unit[1:-1].reshape(self.band.nimages - 2, -1)]
        if self.band.lattice:
            parts.append(scaled[1:-1].reshape(self.band.nimages - 2, -1))
        return np.hstack(parts).ravel()

    def set_x(self, x: np.ndarray) -> None:
        self.band.set_coordinates(*self._split(x))

    def get_gradient(self) -> np.ndarray:
        return -self.band.get_forces().ravel()

    def get_value(self) -> float:
        return float(np.max(self.band.energies))

    def iterimages(self):
        return self.band.iterimages()


class VelocityProjection(MDMin):
    """Velocity-projection optimizer of Bessarab et al. (2015, Sec. 4): ASE's ``MDMin`` with its defaults.

    Velocity Verlet with unit mass that keeps, at every step, only the velocity component along
    the force (none when it points against the force):

        v ← ½ dt F                                    (first step, from rest)
        v ← (v + ½ dt F)·F̂ F̂  [if > 0, else 0],  v ← v + ½ dt F   (later steps)
        Δx = dt v, scaled down as a whole when one row (a spin or an atom) would move more than maxstep

    which is ``ase.optimize.MDMin.step``. On a ``GeodesicNEB`` the move is made in the flat
    coordinates of the unit spins and ``set_x`` renormalises them (a retraction onto the spheres);
    the velocity stays tangent because it is projected on the tangent force at every step.

    Parameters
    ----------
    band : a ``GeodesicNEB`` (or any ASE optimizable: Atoms, ase.mep.NEB).
    dt : time step in units where the mass is 1 (a move of ½ dt² F from rest); default 0.5.
    maxstep : largest move of one spin (rad) or atom (Å/ℓ) per step; default 0.1.
    logfile, trajectory, ... : as in ASE optimizers (trajectory frames hold all images with spins);
        the default ``logfile=None`` writes no log.
    """

    defaults = {**MDMin.defaults, "dt": 0.5, "maxstep": 0.1}

    def __init__(self, band, dt: float | None = None, maxstep: float | None = None, logfile=None,
                 trajectory=None, **kwargs):
        super().__init__(band, logfile=logfile, trajectory=trajectory, dt=dt, maxstep=maxstep, **kwargs)
        if self.dt <= 0 or self.maxstep <= 0:
            raise ValueError("dt and maxstep must be positive")


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class NEBResults:
    """Energy profile of a band, fitted and drawn by ASE's NEB tools.

    energies : [M] eV; reaction_coordinate : [M] s, cumulative path length (Å for ``ase.mep.NEB``
    bands, geodesic units for GeodesicNEB); slopes : [M] dE/ds at the images (−F·τ, eV per unit
    of s); images : the images (with spins); coordinate_label : axis label of s.

    The fit (a cubic through the energies and slopes of each pair of neighbouring images), the
    fitted barrier and the figure are those of ``ase.mep.NEBTools`` (``ase.utils.forcecurve``).
    NEBTools reads path lengths and slopes off Cartesian positions and forces, which cannot
    express a path over spheres; so the profile is handed to it along s itself (images on a line
    at s_i, pulled by −dE/ds along it). For an ``ase.mep.NEB`` band this reproduces NEBTools'
    numbers; a GeodesicNEB brings its geodesic length and slopes (``GeodesicNEB.get_results``).
    """

    energies: np.ndarray
    reaction_coordinate: np.ndarray
    slopes: np.ndarray
    images: list
    coordinate_label: str = "path length (Å)"

    @classmethod
    def from_images(cls, images: list[Atoms]) -> NEBResults:
        """Profile of an ``ase.mep.NEB`` band from its images' energies and forces, by NEBTools' rules:
        path length from positions (minimum image), slopes −F·τ along central-difference tangents."""
        fit = fit_images(images)
        # NEBTools gives each slope as a short tangent line (s, E) through its image
        slopes = np.array([(e[-1] - e[0]) / (x[-1] - x[0]) for x, e in fit.lines])
        energies = np.array([image.get_potential_energy() for image in images])
        return cls(energies=energies, reaction_coordinate=np.asarray(fit.path, dtype=float), slopes=slopes,
                   images=list(images))

    def force_fit(self) -> ForceFit:
        """NEBTools' fit of the profile along s (``ase.utils.forcecurve.ForceFit``; energies in eV
        relative to the initial image, path from 0, 20 fitted points per segment)."""
        on_line = np.zeros((len(self.energies), 1, 3))
        on_line[:, 0, 0] = self.reaction_coordinate
        pull = np.zeros_like(on_line)
        pull[:, 0, 0] = -self.slopes
        return fit_raw(self.energies, pull, on_line)

    @property
    def saddle_index(self) -> int:
        """Index of the highest image."""
        return int(np.argmax(self.energies))

    @property
    def saddle_image(self) -> Atoms:
        return self.images[self.saddle_index]

    @property
    def barrier(self) -> float:
        """Forward barrier from the images, max E − E_initial (eV); NEBTools' ``get_barrier(fit=False)``."""
        return float(self.energies.max() - self.energies[0])

    @property
    def reaction_energy(self) -> float:
        """E_final − E_initial (eV)."""
        return float(self.energies[-1] - self.energies[0])

    def fit(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted profile (s, E in eV), 20 points per segment (see :meth:`force_fit`)."""
        fit = self.force_fit()
        return self.reaction_coordinate[0] + np.asarray(fit.fit_path), self.energies[0] + fit.fit_energies

    @property
    def fit_barrier(self) -> float:
        """Forward barrier from the fit (eV); NEBTools' ``get_barrier(fit=True)``."""
        return float(self.force_fit().fit_energies.max())

    def plot(self, path, x=None, xlabel: str | None = None, energy_scale: float = 1.0,
             ylabel: str = "energy (eV)") -> Path:
        """PNG of NEBTools' band plot: energies relative to the initial image, tangent lines, fit.

        ``x`` [M] replaces the reaction coordinate on the horizontal axis (e.g. polarization), mapped
        onto the fit piecewise linearly (tangent lines keep dE/ds ÷ dx/ds); energies are multiplied
        by ``energy_scale`` (e.g. 1000/f.u. with ``ylabel="energy (meV/f.u.)"``).
        """
        from ..figures import new_figure

        fit = self.force_fit()
        s = np.asarray(fit.path)
        if x is None:
            x_images, label = s, self.coordinate_label
        else:
            x_images = np.asarray(x, dtype=float)
            if x_images.shape != self.energies.shape:
                raise ValueError(f"x needs one value per image ({len(self.energies)}), got shape {x_images.shape}")
            label = xlabel or "x"
        dx_ds = np.gradient(x_images, s)
        lines = [(xi + d * (xs - si), energy_scale * es) for (xs, es), xi, si, d in zip(fit.lines, x_images, s, dx_ds)]
        scaled = ForceFit(x_images, energy_scale * fit.energies, np.interp(fit.fit_path, s, x_images),
                          energy_scale * fit.fit_energies, lines)
        figure = new_figure(figsize=(5, 3.6))
        ax = scaled.plot(ax=figure.add_subplot())
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        # the unit is what ylabel holds in its last parentheses, "energy (meV/f.u.)" → "meV/f.u."
        unit = ylabel[ylabel.rfind("(") + 1:-1] if ylabel.endswith(")") and "(" in ylabel else ylabel
        ax.set_title(f"barrier {energy_scale * fit.fit_energies.max():.4g} {unit}, "
                     f"ΔE {energy_scale * self.reaction_energy:.4f} {unit}", fontsize=10)
        figure.savefig(path, dpi=120)
        return Path(path)
