"""Coupled spin-lattice energy minimisation for any calculator with magnetic torques.

Degrees of freedom are the atomic positions R (Å; or the generalised positions of an ASE cell
filter, which appends the cell) and the spin directions ŝ_i on the unit sphere; the moments
|S_i| never change. Spins move only by rotations about axes perpendicular to them (geodesics of
the sphere), so |S_i| is kept to round-off without any renormalisation.

Balancing Å and radians
-----------------------
A spin rotated by an angle φ (rad) counts as a displacement ℓ φ, with ℓ = ``length_scale``
(Å/rad, default 1). In these units the generalised force on a spin is

    f_i = |S_i| ω⊥_i / ℓ   (eV/Å),   ω⊥_i = ω_i − (ω_i·ŝ_i) ŝ_i,  ω = −∂E/∂S (eV/μB),

because ∂E/∂φ = −|S_i| ω⊥_i·(axis of rotation) in eV/rad. Positions and scaled spin angles then
form one flat vector on which L-BFGS's inner products, FIRE's velocity mixing and the trust step
act. L-BFGS rescales its initial inverse Hessian from the latest curvature pair, so ℓ matters
only for the relative weight of the two blocks; step caps are given separately for each block
(``maxstep`` Å, ``max_angle`` rad), so a bad ℓ cannot produce a huge rotation.

Geodesic L-BFGS (in the spirit of Ivanov, Uzdin and Jónsson, Comput. Phys. Commun. 260, 107749
(2021)): a spin step is a tangent vector θ_i ⟂ ŝ_i; the spin turns by |θ_i| about k̂ = ŝ × θ̂
(Rodrigues). The same rotation parallel-transports every stored tangent vector (the L-BFGS pairs,
FIRE velocities, the previous gradient) to the new tangent plane, so the curvature pairs
s_k = step, y_k = g_{k+1} − T g_k are formed in one tangent space. Steps that raise the energy are
rejected and retried with a halved trust radius and a cleared memory: the energy of accepted steps
never increases (with ``energy_tolerance`` = 0).

Convergence: max_i |F_i| ≤ fmax (eV/Å, positions or filter DOFs) and max_i |ω⊥_i| ≤ tmax (eV/μB).

=========  ======================  ==========================================
symbol     variable                units
=========  ======================  ==========================================
ŝ          ``unit``                unit spins [M, 3] (M magnetic atoms)
|S|        ``moments``             μB [M]
ω          torques                 eV/μB [N, 3]
θ          ``theta``               rad, tangent to ŝ [M, 3]
ℓ          ``length_scale``        Å/rad
g          ``gradient``            eV/Å, flat [3 n_pos + 3 M]
=========  ======================  ==========================================

The classes follow ``ase.optimize.Optimizer``: ``run(fmax=, tmax=, steps=)``, ``irun``,
``attach``, ``trajectory=`` (spins are written as initial magnetic moments), ``logfile``,
``restart`` (L-BFGS memory, JSON). ``n_evaluations`` counts energy/force/torque evaluations.
"""

from __future__ import annotations

import time

import numpy as np
from ase import Atoms
from ase.optimize.optimize import Optimizer
from ase.utils.abc import Optimizable

from ..spins import cross, dot, tangent, unit_vectors

RELAX_MODES = ("spins", "positions", "both")


# ------------------------------------------------------------------------------- pure functions
def geodesic_rotate(unit: np.ndarray, theta: np.ndarray, *vectors: np.ndarray):
    """Rotate unit spins along great circles by the tangent vectors ``theta`` (rad) [M, 3].

    Each ŝ_i turns by |θ_i| about k̂_i = ŝ_i × θ̂_i, so ŝ_i → ŝ_i cos|θ_i| + θ̂_i sin|θ_i|; every
    array in ``vectors`` ([M, 3], tangent at ŝ) is rotated the same way (parallel transport along
    the geodesic). Returns the rotated spins followed by the transported vectors.
    """
    angle = np.sqrt(np.einsum("ij,ij->i", theta, theta))[:, None]
    # a unit axis keeps the map orthogonal to round-off, so |ŝ| errors add up instead of compounding
    axis, _ = unit_vectors(cross(unit, theta))
    cos, sin = np.cos(angle), np.sin(angle)

    def rotate(v):
        return v * cos + cross(axis, v) * sin + axis * (dot(axis, v) * (1.0 - cos))

    return (rotate(unit), *(rotate(v) for v in vectors))


def lbfgs_direction(gradient: np.ndarray, steps: list, changes: list, h0: float) -> np.ndarray:
    """L-BFGS two-loop recursion: −H g for flat ``gradient`` from pairs (s_k, y_k), oldest first.

    ``h0`` is the initial inverse Hessian (a scalar, Å²/eV in the scaled units).
    """
    q = gradient.copy()
    rho = [1.0 / float(y @ s) for s, y in zip(steps, changes)]
    alpha = []
    for s, y, r in zip(reversed(steps), reversed(changes), reversed(rho)):
        a = r * float(s @ q)
        q -= a * y
        alpha.append(a)
    z = h0 * q
    for s, y, r, a in zip(steps, changes, rho, reversed(alpha)):
        z += s * (a - r * float(y @ z))
    return -z


def damped_precession_angles(unit: np.ndarray, torques: np.ndarray, alpha_damp: float = 1.0,
                             discrete_factor: float = 10.0) -> np.ndarray:
    """Rotation vectors θ (rad) [M, 3] of one LAMMPS ``min_style spin`` step.

    dŝ/dt = λ ŝ × (ω × ŝ) = λ ω⊥ with the adaptive time step Δt = 2π / (κ max_i |ω_i|)
    (λ = ``alpha_damp``, κ = ``discrete_factor``; ħ cancels between ω and Δt), so the spin
    with the largest full torque turns by at most 2πλ/κ rad.
    """
    largest = np.sqrt(np.einsum("ij,ij->i", torques, torques)).max(initial=0.0)
    if largest == 0.0:
        return np.zeros_like(unit)
    return (2.0 * np.pi * alpha_damp / (discrete_factor * largest)) * tangent(torques, unit)


# ------------------------------------------------------------------------------- degrees of freedom
class SpinLatticeOptimizable(Optimizable):
    """Positions (or a cell filter's DOFs) and spin directions of atoms as one optimisation vector.

    Parameters
    ----------
    target : ASE atoms with (N, 3) spins and a spin calculator, or an ASE filter wrapping them
        (e.g. ``ase.filters.FrechetCellFilter(atoms)``; its generalised positions and forces are
        used, while spins live on ``target.atoms``).
    relax : "spins", "positions" or "both".
    length_scale : ℓ in Å per radian of spin rotation (see the module docstring).
    tmax : torque criterion of ``converged`` (eV/μB), used when ASE's own optimizers drive this
        object (e.g. ``ase.optimize.FIRE(SpinLatticeOptimizable(atoms, tmax=1e-3))``).

    The flat vector is [positions (3 n_pos, Å), ℓ ŝ (3 M, Å)]; ``set_x`` turns the spin block's
    change into a geodesic rotation (the tangent part of the change, of length ℓ φ), so ASE's own
    optimizers also run on it. The gradient's spin block is −|S| ω⊥/ℓ (eV/Å).
    """

    def __init__(self, target, relax: str = "both", length_scale: float = 1.0, tmax: float = np.inf):
        if relax not in RELAX_MODES:
            raise ValueError(f"relax must be one of {RELAX_MODES}, got {relax!r}")
        if not length_scale > 0:
            raise ValueError(f"length_scale must be positive (Å/rad), got {length_scale}")
        atoms = target if isinstance(target, Atoms) else getattr(target, "atoms", None)
        if not isinstance(atoms, Atoms):
            raise TypeError("target must be ASE Atoms or an ASE filter wrapping Atoms")
        if atoms.calc is None:
            raise ValueError("the atoms have no calculator: attach a spin calculator first")
        if relax == "spins" and target is not atoms:
            raise ValueError("a cell filter moves the lattice: use relax='both' or 'positions' with it")
        spins = atoms.get_initial_magnetic_moments()
        if spins.shape != (len(atoms), 3):
            raise ValueError(f"spins must be non-collinear (N, 3) moments in μB, got shape {spins.shape}")
        unit, moments = unit_vectors(spins)
        self.magnetic = np.flatnonzero(moments > 0)
        if relax != "positions" and len(self.magnetic) == 0:
            raise ValueError("no atom carries a spin: set (N, 3) initial magnetic moments in μB")
        self.target, self.atoms, self.relax = target, atoms, relax
        self.length_scale = float(length_scale)
        self.moments = moments[self.magnetic]
        self.unit = unit[self.magnetic]
        self.move_positions = relax != "spins"
        self.move_spins = relax != "positions"
        self.n_pos = len(target.get_positions()) if self.move_positions else 0
        self.n_spin = len(self.magnetic) if self.move_spins else 0
        self.tmax = float(tmax)

    def __ase_optimizable__(self):
        return self

    # -- state
    def write_spins(self) -> None:
        spins = self.atoms.get_initial_magnetic_moments()
        spins[self.magnetic] = self.unit * self.moments[:, None]
        self.atoms.set_initial_magnetic_moments(spins)

    def get_state(self) -> tuple:
        return (self.target.get_positions() if self.move_positions else None, self.unit.copy())

    def set_state(self, state: tuple) -> None:
        positions, unit = state
        if self.move_positions:
            self.target.set_positions(positions)
        self.unit = unit.copy()
        self.write_spins()

    def split(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position block [n_pos, 3] and spin block [M, 3] of a flat vector (views)."""
        k = 3 * self.n_pos
        return flat[:k].reshape(-1, 3), flat[k:].reshape(-1, 3)

    def move(self, step: np.ndarray, *vectors: np.ndarray) -> list[np.ndarray]:
        """Displace by the flat ``step`` (positions Å; spins: tangent, ℓ·rad) and return the
        flat ``vectors`` (tangent at the old point) transported to the new point."""
        dpos, dspin = self.split(step)
        if self.move_positions:
            self.target.set_positions(self.target.get_positions() + dpos)
        if not self.move_spins:
            return [v.copy() for v in vectors]
        out = [v.copy() for v in vectors]
        rotated = geodesic_rotate(self.unit, dspin / self.length_scale, *(self.split(v)[1] for v in vectors))
        self.unit = rotated[0]
        for o, r in zip(out, rotated[1:]):
            self.split(o)[1][:] = r
        self.write_spins()
        return out

    # -- quantities
    def perpendicular_torques(self) -> np.ndarray:
        """ω⊥ [M, 3] (eV/μB) on the magnetic atoms."""
        torques = self.atoms.calc.get_property("magnetic_torques", self.atoms)
        return tangent(torques[self.magnetic], self.unit)

    def max_force(self) -> float:
        """max |F| (eV/Å) over the moved position DOFs (0 when positions are fixed)."""
        if not self.move_positions:
            return 0.0
        f = self.target.get_forces()
        return float(np.sqrt(np.einsum("ij,ij->i", f, f)).max(initial=0.0))

    def max_torque(self) -> float:
        """max |ω⊥| (eV/μB) over magnetic atoms."""
        w = self.perpendicular_torques()
        return float(np.sqrt(np.einsum("ij,ij->i", w, w)).max(initial=0.0))

    # -- Optimizable interface
    def ndofs(self) -> int:
        return 3 * (self.n_pos + self.n_spin)

    def get_x(self) -> np.ndarray:
        blocks = []
        if self.move_positions:
            blocks.append(self.target.get_positions().ravel())
        if self.move_spins:
            blocks.append(self.length_scale * self.unit.ravel())
        return np.concatenate(blocks)

    def set_x(self, x: np.ndarray) -> None:
        step = x - self.get_x()
        if self.move_spins:
            dspin = self.split(step)[1]
            dspin[:] = tangent(dspin, self.unit)
        self.move(step)

    def get_gradient(self) -> np.ndarray:
        blocks = []
        if self.move_positions:
            blocks.append(-self.target.get_forces().ravel())
        if self.move_spins:
            blocks.append((-self.moments[:, None] / self.length_scale * self.perpendicular_torques()).ravel())
        return np.concatenate(blocks)

    def get_value(self) -> float:
        return float(self.target.get_potential_energy())

    def iterimages(self):
        return self.atoms.iterimages()

    def converged(self, gradient: np.ndarray, fmax: float) -> bool:
        forces, spin_grad = self.split(gradient)
        fmax_now = np.sqrt(np.einsum("ij,ij->i", forces, forces)).max(initial=0.0)
        torque = np.sqrt(np.einsum("ij,ij->i", spin_grad, spin_grad)) * self.length_scale / self.moments[:self.n_spin]
        return bool(fmax_now <= fmax and torque.max(initial=0.0) <= self.tmax)

    def gradient_norm(self, gradient: np.ndarray) -> float:
        forces = self.split(gradient)[0]
        return float(np.sqrt(np.einsum("ij,ij->i", forces, forces)).max(initial=0.0))


# ------------------------------------------------------------------------------- optimizers
class SpinLatticeOptimizer(Optimizer):
    """Base of the spin-lattice optimizers: DOFs, convergence on forces and torques, log.

    Parameters
    ----------
    atoms : ASE atoms with (N, 3) spins and a spin calculator, or a cell filter wrapping them.
    relax : "both" (default), "spins" or "positions".
    length_scale : ℓ, Å per radian of spin rotation.
    maxstep : largest displacement of any position DOF in one step, Å.
    max_angle : largest rotation of any spin in one step, rad.
    restart, logfile, trajectory, append_trajectory, loginterval : as in ``ase.optimize``.
    """

    def __init__(self, atoms, relax: str = "both", length_scale: float = 1.0, maxstep: float = 0.2,
                 max_angle: float = 0.5, restart=None, logfile="-", trajectory=None, append_trajectory=False,
                 **kwargs):
        if not maxstep > 0 or not 0 < max_angle <= np.pi / 2:
            raise ValueError(f"need maxstep > 0 Å and 0 < max_angle ≤ π/2 rad, got {maxstep}, {max_angle}")
        self.dofs = SpinLatticeOptimizable(atoms, relax, length_scale)
        self.maxstep, self.max_angle = float(maxstep), float(max_angle)
        self.n_evaluations = 0
        super().__init__(atoms, restart=restart, logfile=logfile, trajectory=trajectory,
                         append_trajectory=append_trajectory, **kwargs)
        self.optimizable = self.dofs

    def irun(self, fmax: float = 0.05, tmax: float = 1e-3, steps: int = 100_000_000):
        """As ``Optimizer.irun``, converging on max |F| ≤ fmax (eV/Å) and max |ω⊥| ≤ tmax (eV/μB)."""
        self.dofs.tmax = float(tmax)
        return super().irun(fmax=fmax, steps=steps)

    def run(self, fmax: float = 0.05, tmax: float = 1e-3, steps: int = 100_000_000) -> bool:
        """Relax until max |F| ≤ fmax (eV/Å) and max |ω⊥| ≤ tmax (eV/μB), or ``steps`` steps."""
        self.dofs.tmax = float(tmax)
        return super().run(fmax=fmax, steps=steps)

    def todict(self):
        return super().todict() | {"relax": self.dofs.relax, "length_scale": self.dofs.length_scale,
                                   "max_angle": self.max_angle, "tmax": self.dofs.tmax}

    def evaluate(self) -> tuple[float, np.ndarray]:
        """Energy (eV) and flat gradient at the current point (one calculator call)."""
        self.n_evaluations += 1
        return self.dofs.get_value(), self.dofs.get_gradient()

    def step_fraction(self, step: np.ndarray) -> float:
        """Size of ``step`` relative to the caps: the larger of max |Δx|/maxstep and max φ/max_angle."""
        dpos, dspin = self.dofs.split(step)
        fraction = 0.0
        if len(dpos):
            fraction = np.sqrt(np.einsum("ij,ij->i", dpos, dpos)).max() / self.maxstep
        if len(dspin):
            angle = np.sqrt(np.einsum("ij,ij->i", dspin, dspin)).max() / self.dofs.length_scale
            fraction = max(fraction, angle / self.max_angle)
        return float(fraction)

    def cap(self, step: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Shrink ``step`` uniformly so no DOF moves more than maxstep Å / max_angle rad (× scale)."""
        fraction = self.step_fraction(step)
        return step * (scale / fraction) if fraction > scale else step

    def log(self, gradient=None):
        name = self.__class__.__name__
        if self.nsteps == 0:
            self.logfile.write(f"{' ' * len(name)}  {'Step':>4s} {'Time':>8s} {'Energy[eV]':>17s} "
                               f"{'fmax[eV/A]':>11s} {'tmax[eV/muB]':>12s} {'evals':>6s}\n")
        t = time.localtime()
        self.logfile.write(f"{name}:  {self.nsteps:4d} {t[3]:02d}:{t[4]:02d}:{t[5]:02d} "
                           f"{self.dofs.get_value():17.8f} {self.dofs.max_force():11.6f} "
                           f"{self.dofs.max_torque() if self.dofs.move_spins else 0.0:12.3e} "
                           f"{self.n_evaluations:6d}\n")


class SpinLBFGS(SpinLatticeOptimizer):
    """L-BFGS on positions × spheres with geodesic spin steps and transported memory.

    Parameters (besides those of :class:`SpinLatticeOptimizer`)
    ----------
    memory : number of stored (s, y) pairs.
    alpha : initial Hessian guess, eV/Å² in the scaled units (ASE's default 70). Afterwards the
        initial inverse Hessian is s·y/y·y of the latest pair, doubled after a downhill step along
        which the energy is not convex (random spin starts), so steepest-descent phases speed up.
    energy_tolerance : a step raising the energy by more than this (eV) is rejected; 0 makes
        accepted energies non-increasing. A small positive value absorbs float32 round-off of
        large systems' total energies.
    max_retries : halvings of the trust radius tried within one step before giving up the step.
    """

    def __init__(self, atoms, memory: int = 20, alpha: float = 70.0, energy_tolerance: float = 0.0,
                 max_retries: int = 10, **kwargs):
        if memory < 1 or not alpha > 0 or energy_tolerance < 0:
            raise ValueError("need memory ≥ 1, alpha > 0 eV/Å² and energy_tolerance ≥ 0 eV")
        self.memory, self.alpha = int(memory), float(alpha)
        self.energy_tolerance, self.max_retries = float(energy_tolerance), int(max_retries)
        super().__init__(atoms, **kwargs)

    def initialize(self):
        self.steps_hist, self.changes_hist = [], []
        self.trust = 1.0
        self.h0 = 1.0 / self.alpha
        self.energy, self.gradient = None, None

    def read(self):
        data = self.load()
        self.initialize()
        self.steps_hist = [np.asarray(s) for s in data["steps"]]
        self.changes_hist = [np.asarray(y) for y in data["changes"]]
        self.trust, self.h0 = float(data["trust"]), float(data["h0"])

    def reset_memory(self) -> None:
        self.steps_hist.clear()
        self.changes_hist.clear()

    def step(self):
        if self.energy is None:
            self.energy, self.gradient = self.evaluate()
        e0, g0 = self.energy, self.gradient
        state = self.dofs.get_state()
        for _ in range(self.max_retries + 1):
            direction = lbfgs_direction(g0, self.steps_hist, self.changes_hist, self.h0)
            if float(direction @ g0) >= 0.0:  # not a descent direction: forget the curvature
                self.reset_memory()
                direction = -self.h0 * g0
            step = self.cap(direction, self.trust)
            moved = self.dofs.move(step, step, g0, *self.steps_hist, *self.changes_hist)
            e1, g1 = self.evaluate()
            if e1 - e0 <= self.energy_tolerance:
                break
            # overshoot: back to the last point, no memory, half of the step just tried
            self.dofs.set_state(state)
            self.reset_memory()
            self.trust = 0.5 * self.step_fraction(step)
        else:  # no acceptable step down to a tiny trust radius: stay (at a minimum to within noise)
            self.dofs.set_state(state)
            self.energy, self.gradient = self.evaluate()
            return
        step_t, g0_t = moved[0], moved[1]
        k = len(self.steps_hist)
        self.steps_hist[:] = moved[2:2 + k]
        self.changes_hist[:] = moved[2 + k:]
        change = g1 - g0_t
        curvature = float(step_t @ change)
        if curvature > 1e-12 * float(np.sqrt((step_t @ step_t) * (change @ change))):
            self.steps_hist.append(step_t)
            self.changes_hist.append(change)
            del self.steps_hist[:-self.memory], self.changes_hist[:-self.memory]
            self.h0 = curvature / float(change @ change)
        else:  # flat or concave along the step, yet downhill: be bolder (overshoots are rejected)
            self.h0 *= 2.0
        self.trust = min(1.0, 2.0 * self.trust)
        self.energy, self.gradient = e1, g1
        self.dump({"steps": self.steps_hist, "changes": self.changes_hist, "trust": self.trust, "h0": self.h0})


class SpinFIRE(SpinLatticeOptimizer):
    """FIRE on positions × spheres (FIRE 2.0 rules: Guénolé et al., Comput. Mater. Sci. 175,
    109584 (2020)), with geodesic spin steps and velocities transported along them.

    Robustness: when the power P = F·v turns negative the last half step is undone, velocities
    are zeroed and Δt is cut; every step is capped by maxstep / max_angle. Unit masses; Δt in
    the scaled units (Å, eV) as in ASE's FIRE. Energy may rise on single steps (inertia).

    Parameters (besides those of :class:`SpinLatticeOptimizer`): dt, dtmax, Nmin, finc, fdec,
    astart, fa as in ASE's ``FIRE``.
    """

    def __init__(self, atoms, dt: float = 0.1, dtmax: float = 1.0, Nmin: int = 5, finc: float = 1.1,
                 fdec: float = 0.5, astart: float = 0.1, fa: float = 0.99, **kwargs):
        if not 0 < dt <= dtmax:
            raise ValueError(f"need 0 < dt ≤ dtmax, got dt={dt}, dtmax={dtmax}")
        self.dt0, self.dtmax, self.Nmin = float(dt), float(dtmax), int(Nmin)
        self.finc, self.fdec, self.astart, self.fa = float(finc), float(fdec), float(astart), float(fa)
        super().__init__(atoms, **kwargs)

    def initialize(self):
        self.velocity, self.last_step = None, None
        self.dt, self.a, self.n_positive = self.dt0, self.astart, 0

    def read(self):
        raise NotImplementedError("SpinFIRE keeps no restart file; start it again from the atoms")

    def step(self):
        _, gradient = self.evaluate()
        force = -gradient
        if self.velocity is None:
            self.velocity = np.zeros_like(force)
        power = float(force @ self.velocity)
        if power > 0.0:
            fnorm = np.sqrt(force @ force)
            self.velocity = ((1.0 - self.a) * self.velocity
                             + self.a * np.sqrt(self.velocity @ self.velocity) * force / max(fnorm, 1e-300))
            if self.n_positive > self.Nmin:
                self.dt = min(self.dt * self.finc, self.dtmax)
                self.a *= self.fa
            self.n_positive += 1
        elif self.last_step is not None and self.nsteps > 0:
            # overshoot: go back half of the last step and restart the inertia
            self.dofs.move(-0.5 * self.last_step)
            self.velocity[:] = 0.0
            self.dt *= self.fdec
            self.a, self.n_positive = self.astart, 0
            _, gradient = self.evaluate()
            force = -gradient
        self.velocity = self.velocity + self.dt * force
        step = self.cap(self.dt * self.velocity)
        self.velocity, self.last_step = self.dofs.move(step, self.velocity, step)


class DampedPrecession(SpinLatticeOptimizer):
    """Baseline: LAMMPS ``min_style spin`` damped precession for spins, steepest descent for positions.

    Spins follow dŝ/dt = λ ŝ × (ω × ŝ) with the adaptive step Δt = 2π/(κ max|ω|) (see
    :func:`damped_precession_angles`); positions move by F/alpha (Å), capped by maxstep. One
    evaluation per step, no memory. ``alpha_damp`` = λ, ``discrete_factor`` = κ, ``alpha`` in eV/Å².

    The rule relies on torques with a longitudinal part (LAMMPS's effective fields have one): with
    purely transverse torques (:class:`~ase_deepspin.hamiltonian.SpinHamiltonian`) the largest
    rotation stays 2πλ/κ and the iteration cannot converge. κ must suit the model: with the shipped
    NiO model (longitudinal torque ~2.5e-3 eV/μB in bulk AFM) κ = 400 converges in bulk, where κ = 80
    and LAMMPS's default κ = 10 oscillate; on its grain boundary, whose larger torques shorten the
    step, κ = 80 descends steadily.
    """

    def __init__(self, atoms, alpha_damp: float = 1.0, discrete_factor: float = 10.0, alpha: float = 70.0,
                 **kwargs):
        if not alpha_damp > 0 or not discrete_factor > 0 or not alpha > 0:
            raise ValueError("alpha_damp, discrete_factor and alpha must be positive")
        self.alpha_damp, self.discrete_factor, self.alpha = float(alpha_damp), float(discrete_factor), float(alpha)
        super().__init__(atoms, **kwargs)

    def read(self):
        raise NotImplementedError("DampedPrecession keeps no restart file")

    def step(self):
        _, gradient = self.evaluate()
        step = np.zeros_like(gradient)
        if self.dofs.move_positions:
            self.dofs.split(step)[0][:] = self.dofs.target.get_forces() / self.alpha
            step = self.cap(step)  # the spin block is still zero: caps positions only
        dspin = self.dofs.split(step)[1]
        if self.dofs.move_spins:
            torques = self.dofs.atoms.calc.get_property("magnetic_torques", self.dofs.atoms)[self.dofs.magnetic]
            dspin[:] = self.dofs.length_scale * damped_precession_angles(self.dofs.unit, torques, self.alpha_damp,
                                                                         self.discrete_factor)
        self.dofs.move(step)


def relax_spins(atoms, tmax: float = 1e-4, steps: int = 2000, logfile=None) -> bool:
    """Relax spin directions only (|S_i| and positions fixed) with ``atoms.calc`` (geodesic L-BFGS).

    The result is written into ``atoms``' initial magnetic moments. Returns whether the largest
    torque perpendicular to a spin, max |ω⊥|, is ≤ ``tmax`` (eV/μB) after at most ``steps`` steps.
    Steps that raise the energy are rejected; with a float32 calculator on thousands of atoms, whose
    total energy rounds at ~1e-2 eV, use ``SpinLBFGS(atoms, relax="spins", energy_tolerance=0.02)``.
    """
    optimizer = SpinLBFGS(atoms, relax="spins", logfile=logfile)
    return optimizer.run(tmax=tmax, steps=steps)
