"""Coupled spin-lattice energy minimisation for any calculator with magnetic torques.

Degrees of freedom are the atomic positions R (Å; or the generalised positions of an ASE cell
filter, which appends the cell) and the spin directions ŝ_i on the unit sphere; the moments
|S_i| change only with ``relax="all"``, which adds them as degrees of freedom (scaled by ℓ_m Å/μB,
gradient −ω·ŝ_i, kept ≥ 1e-6 μB) for calculators that determine moment lengths. Spins move only
by rotations about axes perpendicular to them (geodesics of the sphere), so |S_i| is otherwise
kept to round-off without any renormalisation.

**Balancing Å and radians.** A spin rotated by an angle φ (rad) counts as a displacement ℓ φ, with ℓ = ``length_scale``
(Å/rad, default 1). In these units the generalised force on a spin is

    f_i = |S_i| ω⊥_i / ℓ   (eV/Å),   ω⊥_i = ω_i − (ω_i·ŝ_i) ŝ_i,  ω = −∂E/∂S (eV/μB),

because ∂E/∂φ = −|S_i| ω⊥_i·(axis of rotation) in eV/rad. Positions and scaled spin angles then
form one flat vector (:class:`SpinLatticeOptimizable`, an ASE ``Optimizable``) on which L-BFGS's
inner products, the trust step and any ASE optimizer act (``SpinFIRE`` is ASE's FIRE on it).
L-BFGS rescales its initial inverse Hessian from the latest curvature pair, so ℓ matters only for
the relative weight of the two blocks; its step caps are given separately for each block
(``maxstep`` Å, ``max_angle`` rad), so a bad ℓ cannot produce a huge rotation.

Geodesic L-BFGS (in the spirit of Ivanov, Uzdin and Jónsson, Comput. Phys. Commun. 260, 107749
(2021)): a spin step is a tangent vector θ_i ⟂ ŝ_i; the spin turns by |θ_i| about k̂ = ŝ × θ̂
(Rodrigues, :func:`~ase_deepspin.spins.geodesic_rotate`). The same rotation parallel-transports
every stored tangent vector (the L-BFGS pairs, the previous gradient) to the new tangent plane, so
the curvature pairs s_k = step, y_k = g_{k+1} − T g_k are formed in one tangent space. Steps that
raise the energy are rejected and retried with a halved trust radius and a cleared memory: the
energy of accepted steps never increases (with ``energy_tolerance`` = 0).

Convergence: max_i |F_i| ≤ fmax (eV/Å, positions or filter DOFs) and max_i |ω⊥_i| ≤ tmax (eV/μB).

=========  ======================  ==========================================
symbol     variable                units
=========  ======================  ==========================================
ŝ          ``unit``                unit spins [M, 3] (M magnetic atoms, read from the atoms)
|S|        ``moments``             μB [M] (read from the atoms)
ω          torques                 eV/μB [N, 3]
θ          ``theta``               rad, tangent to ŝ [M, 3]
ℓ          ``length_scale``        Å/rad
g          ``gradient``            eV/Å, flat [3 n_pos + 3 M]
=========  ======================  ==========================================

The classes follow ``ase.optimize.Optimizer``: ``run(fmax=, tmax=, steps=)``, ``irun``,
``attach``, ``trajectory=`` (spins are written as initial magnetic moments), ``logfile`` (``"-"``
is standard output), ``restart`` (L-BFGS memory, JSON). ``n_evaluations`` of the custom
optimizers counts energy/force/torque evaluations.

State lives in the atoms: every step reads positions and spins from them and writes its move
back. An optimizer whose memory describes the path (L-BFGS pairs, FIRE's velocity) starts afresh
when the atoms' positions, cell or spins are not what its last step left, e.g. spins set with
``atoms.set_initial_magnetic_moments`` between two runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.optimize import FIRE
from ase.optimize.optimize import Optimizer
from ase.utils.abc import Optimizable

from ..spins import geodesic_rotate, tangent, unit_vectors
from ..system import magnetic_mask
from .longitudinal import MIN_LENGTH, check_lengths_determined

__all__ = ["DampedPrecession", "SpinFIRE", "SpinLatticeOptimizable", "SpinLBFGS", "damped_precession_angles",
           "SpinRelaxation", "lbfgs_direction", "relax_spins"]

RELAX_MODES = ("spins", "positions", "both", "all")
# a length clipped onto a moment bound reads back from its spin vector within a few ulps of it
ON_BOUND_RTOL = 1e-9


# ------------------------------------------------------------------------------- pure functions
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
    relax : "spins", "positions", "both" or "all" (positions, spin directions and moment lengths).
    length_scale : ℓ in Å per radian of spin rotation (see the module docstring).
    moment_scale : ℓ_m in Å per μB of moment length (``relax="all"``): a length change δ|S| counts as
        a displacement ℓ_m δ|S|, and its gradient is −(ω·ŝ)/ℓ_m (eV/Å).
    tmax : torque criterion of ``converged`` (eV/μB), used when ASE's own optimizers drive this
        object (e.g. ``ase.optimize.FIRE(SpinLatticeOptimizable(atoms, tmax=1e-3))``).
    moment_bounds : (lo, hi) in μB, or {element: (lo, hi)}, for ``relax="all"``: every length is kept
        in [lo, hi] (a trust region, e.g. the range of the model's training moments, ``ase-deepspin
        info``), as a box constraint: a length on a bound whose gradient pushes it outward has that
        gradient component set to zero (the projected gradient), so convergence there means a minimum
        on the bound. Start inside the bounds.

    The flat vector is [positions (3 n_pos, Å), ℓ ŝ (3 M, Å)] over the M magnetic atoms (non-zero
    moments); ``set_x`` turns the spin block's change into a geodesic rotation (the tangent part of
    the change, of length ℓ φ), so ASE's own optimizers also run on it. The gradient's spin block
    is −|S| ω⊥/ℓ (eV/Å). Nothing is copied: positions and spins are read from the atoms at every
    call and written back by every move, so the atoms hold the only state.
    """

    def __init__(self, target, relax: str = "both", length_scale: float = 1.0, tmax: float = np.inf,
                 moment_scale: float = 1.0, moment_bounds=None):
        if relax not in RELAX_MODES:
            raise ValueError(f"relax must be one of {RELAX_MODES}, got {relax!r}")
        if not length_scale > 0 or not moment_scale > 0:
            raise ValueError(f"length_scale (Å/rad) and moment_scale (Å/μB) must be positive, got {length_scale}, "
                             f"{moment_scale}")
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
        if relax != "positions" and not magnetic_mask(spins).any():
            raise ValueError("no atom carries a spin: set (N, 3) initial magnetic moments in μB")
        self.target, self.atoms, self.relax = target, atoms, relax
        self.length_scale = float(length_scale)
        self.move_positions = relax != "spins"
        self.move_spins = relax != "positions"
        self.move_lengths = relax == "all"
        if self.move_lengths:
            check_lengths_determined(atoms)
        self.moment_scale = float(moment_scale)
        self.n_pos = len(target.get_positions()) if self.move_positions else 0
        self.n_spin = int(magnetic_mask(spins).sum()) if self.move_spins else 0
        self.tmax = float(tmax)
        self.bounds = self._moment_bounds(moment_bounds) if moment_bounds is not None else None

    def _moment_bounds(self, bounds) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper length bounds [M] (μB) of the magnetic atoms, checked against their moments."""
        if not self.move_lengths:
            raise ValueError(f"moment_bounds bound moment lengths, which only relax='all' changes (relax={self.relax!r})")
        magnetic, _, moments = self.magnetic_spins()
        symbols = np.array(self.atoms.get_chemical_symbols())[magnetic]
        if not isinstance(bounds, dict):
            bounds = {symbol: bounds for symbol in set(symbols)}
        missing = sorted(set(symbols) - set(bounds))
        if missing:
            raise ValueError(f"moment_bounds give no range for the magnetic element(s) {missing}")
        pairs = np.array([tuple(map(float, bounds[symbol])) for symbol in symbols]).reshape(-1, 2)
        if not (np.all(np.isfinite(pairs)) and np.all(pairs[:, 0] >= MIN_LENGTH) and np.all(pairs[:, 0] < pairs[:, 1])):
            raise ValueError(f"moment_bounds need {MIN_LENGTH} ≤ lo < hi (μB), got {bounds}")
        outside = np.flatnonzero((moments < pairs[:, 0]) | (moments > pairs[:, 1]))
        if len(outside):
            k = outside[0]
            raise ValueError(f"{len(outside)} moment(s) start outside moment_bounds, e.g. atom {magnetic[k]} "
                             f"({symbols[k]}) with |S| = {moments[k]:.4g} μB outside [{pairs[k, 0]:.4g}, "
                             f"{pairs[k, 1]:.4g}] μB")
        return pairs[:, 0], pairs[:, 1]

    def __ase_optimizable__(self):
        return self

    # -- state (all of it in the atoms)
    def magnetic_spins(self, spins: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices [M] of the magnetic atoms, their unit spins ŝ [M, 3] and moments |S| [M] (μB), of
        ``spins`` [N, 3] (μB; default: read from the atoms)."""
        if spins is None:
            spins = self.atoms.get_initial_magnetic_moments()
        magnetic = np.flatnonzero(magnetic_mask(spins))
        unit, moments = unit_vectors(spins[magnetic])
        return magnetic, unit, moments

    def get_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the atoms' positions (Å), cell (Å) and spins (μB): everything a step can change."""
        return self.atoms.get_positions(), self.atoms.cell.array.copy(), self.atoms.get_initial_magnetic_moments()

    def set_state(self, state: tuple) -> None:
        """Put the atoms back into a state from :meth:`get_state` exactly (undoing a rejected step)."""
        positions, cell, spins = state
        self.atoms.set_cell(cell)
        # the saved positions already obey the constraints; applying them again would move them
        self.atoms.set_positions(positions, apply_constraint=False)
        self.atoms.set_initial_magnetic_moments(spins)

    def split(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position block [n_pos, 3] and spin-direction block [M, 3] of a flat vector (views)."""
        k = 3 * self.n_pos
        return flat[:k].reshape(-1, 3), flat[k:k + 3 * self.n_spin].reshape(-1, 3)

    def lengths_block(self, flat: np.ndarray) -> np.ndarray:
        """Moment-length block [M] (ℓ_m |S|, Å) of a flat vector (a view; empty unless ``relax="all"``)."""
        return flat[3 * (self.n_pos + self.n_spin):]

    def move(self, step: np.ndarray, *vectors: np.ndarray) -> list[np.ndarray]:
        """Displace by the flat ``step`` (positions Å; spins: tangent, ℓ·rad) and return the
        flat ``vectors`` (tangent at the old point) transported to the new point."""
        dpos, dspin = self.split(step)
        if self.move_positions:
            self.target.set_positions(self.target.get_positions() + dpos)
        out = [v.copy() for v in vectors]
        if not self.move_spins:
            return out
        spins = self.atoms.get_initial_magnetic_moments()
        magnetic, unit, moments = self.magnetic_spins(spins)
        rotated = geodesic_rotate(unit, dspin / self.length_scale, *(self.split(v)[1] for v in vectors))
        for o, r in zip(out, rotated[1:]):
            self.split(o)[1][:] = r
        if self.move_lengths:
            moments = moments + self.lengths_block(step) / self.moment_scale
            moments = np.maximum(moments, MIN_LENGTH) if self.bounds is None else np.clip(moments, *self.bounds)
        spins[magnetic] = rotated[0] * moments[:, None]
        self.atoms.set_initial_magnetic_moments(spins)
        return out

    # -- quantities
    def perpendicular_torques(self) -> np.ndarray:
        """ω⊥ [M, 3] (eV/μB) on the magnetic atoms."""
        magnetic, unit, _ = self.magnetic_spins()
        torques = self.atoms.calc.get_property("magnetic_torques", self.atoms)
        return tangent(torques[magnetic], unit)

    def max_force(self) -> float:
        """max |F| (eV/Å) over the moved position DOFs (0 when positions are fixed)."""
        if not self.move_positions:
            return 0.0
        f = self.target.get_forces()
        return float(np.sqrt(np.einsum("ij,ij->i", f, f)).max(initial=0.0))

    def longitudinal_torques(self, torques: np.ndarray, unit: np.ndarray, moments: np.ndarray) -> np.ndarray:
        """ω·ŝ [M] (eV/μB), zero where a length sits on a bound it is pushed across (``moment_bounds``)."""
        along = np.einsum("ij,ij->i", torques, unit)
        if self.bounds is not None:
            lo, hi = self.bounds
            low, high = moments <= lo * (1 + ON_BOUND_RTOL), moments >= hi * (1 - ON_BOUND_RTOL)
            # ω·ŝ > 0 lowers the energy by lengthening; the bound takes that force
            along = np.where((low & (along < 0)) | (high & (along > 0)), 0.0, along)
        return along

    def max_torque(self) -> float:
        """max |ω⊥| (eV/μB) over magnetic atoms; the full max |ω| when lengths are relaxed too (its
        longitudinal part projected on the ``moment_bounds``)."""
        if self.move_lengths:
            magnetic, unit, moments = self.magnetic_spins()
            torques = self.atoms.calc.get_property("magnetic_torques", self.atoms)[magnetic]
            w = tangent(torques, unit) + self.longitudinal_torques(torques, unit, moments)[:, None] * unit
        else:
            w = self.perpendicular_torques()
        return float(np.sqrt(np.einsum("ij,ij->i", w, w)).max(initial=0.0))

    # -- Optimizable interface
    def ndofs(self) -> int:
        return 3 * (self.n_pos + self.n_spin) + (self.n_spin if self.move_lengths else 0)

    def get_x(self) -> np.ndarray:
        blocks = []
        if self.move_positions:
            blocks.append(self.target.get_positions().ravel())
        if self.move_spins:
            blocks.append(self.length_scale * self.magnetic_spins()[1].ravel())
        if self.move_lengths:
            blocks.append(self.moment_scale * self.magnetic_spins()[2])
        return np.concatenate(blocks)

    def set_x(self, x: np.ndarray) -> None:
        step = x - self.get_x()
        if self.move_spins:
            dspin = self.split(step)[1]
            dspin[:] = tangent(dspin, self.magnetic_spins()[1])
        self.move(step)

    def get_gradient(self) -> np.ndarray:
        blocks = []
        if self.move_positions:
            blocks.append(-self.target.get_forces().ravel())
        if self.move_spins:
            magnetic, unit, moments = self.magnetic_spins()
            torques = self.atoms.calc.get_property("magnetic_torques", self.atoms)[magnetic]
            blocks.append((-moments[:, None] / self.length_scale * tangent(torques, unit)).ravel())
            if self.move_lengths:
                blocks.append(-self.longitudinal_torques(torques, unit, moments) / self.moment_scale)
        return np.concatenate(blocks)

    def get_value(self) -> float:
        return float(self.target.get_potential_energy())

    def iterimages(self):
        return self.atoms.iterimages()

    def converged(self, gradient: np.ndarray, fmax: float) -> bool:
        forces, spin_grad = self.split(gradient)
        fmax_now = np.sqrt(np.einsum("ij,ij->i", forces, forces)).max(initial=0.0)
        if not self.move_spins:
            return bool(fmax_now <= fmax)
        torque2 = np.einsum("ij,ij->i", spin_grad, spin_grad) * (self.length_scale / self.magnetic_spins()[2]) ** 2
        if self.move_lengths:
            torque2 = torque2 + (self.lengths_block(gradient) * self.moment_scale) ** 2
        torque = np.sqrt(torque2)
        return bool(fmax_now <= fmax and torque.max(initial=0.0) <= self.tmax)

    def gradient_norm(self, gradient: np.ndarray) -> float:
        forces = self.split(gradient)[0]
        return float(np.sqrt(np.einsum("ij,ij->i", forces, forces)).max(initial=0.0))


# ------------------------------------------------------------------------------- optimizers
class SpinLatticeRun:
    """What every spin-lattice optimizer adds to the ASE optimizer it derives from, which works on
    ``self.dofs`` (a :class:`SpinLatticeOptimizable`): the torque criterion of ``run``/``irun``, a
    log with it, and a check that the atoms still hold what the last step left in them.
    """

    dofs: SpinLatticeOptimizable
    last_state: tuple | None = None  # positions, cell and spins after the last step, for changed_outside

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
                                   "tmax": self.dofs.tmax}

    def changed_outside(self) -> bool:
        """Whether the atoms' positions, cell or spins differ from what the last step left (someone set
        them between steps or runs): then memory of the old path no longer describes this point."""
        if self.last_state is None:
            return False
        return not all(np.array_equal(a, b) for a, b in zip(self.last_state, self.dofs.get_state()))

    def remember_state(self) -> None:
        self.last_state = self.dofs.get_state()

    def log(self, gradient=None):
        """One line per step: energy (eV), max |F| (eV/Å), max |ω⊥| (eV/μB)."""
        name = self.__class__.__name__
        if self.nsteps == 0:
            self.logfile.write(f"{' ' * len(name)}  {'Step':>4s} {'Time':>8s} {'Energy[eV]':>17s} "
                               f"{'fmax[eV/A]':>11s} {'tmax[eV/muB]':>12s}\n")
        t = time.localtime()
        self.logfile.write(f"{name}:  {self.nsteps:4d} {t[3]:02d}:{t[4]:02d}:{t[5]:02d} "
                           f"{self.dofs.get_value():17.8f} {self.dofs.max_force():11.6f} "
                           f"{self.dofs.max_torque() if self.dofs.move_spins else 0.0:12.3e}\n")


class SpinLatticeOptimizer(SpinLatticeRun, Optimizer):
    """Base of the custom spin-lattice optimizers: DOFs, per-block step caps, evaluation count.

    Parameters
    ----------
    atoms : ASE atoms with (N, 3) spins and a spin calculator, or a cell filter wrapping them.
    relax : "both" (default), "spins", "positions" or "all" (moment lengths too; the calculator must
        determine them, see ``check_longitudinal``).
    length_scale : ℓ, Å per radian of spin rotation.
    moment_scale : ℓ_m, Å per μB of moment length (``relax="all"``).
    moment_bounds : (lo, hi) μB or {element: (lo, hi)}: a trust region for the lengths (``relax="all"``,
        see :class:`SpinLatticeOptimizable`).
    maxstep : largest displacement of any position DOF in one step, Å.
    max_angle : largest rotation of any spin in one step, rad.
    max_length_step : largest change of any moment length in one step, μB (``relax="all"``).
    restart, logfile, trajectory, append_trajectory, loginterval : as in ``ase.optimize``
        (``logfile="-"`` is standard output).
    """

    def __init__(self, atoms, relax: str = "both", length_scale: float = 1.0, maxstep: float = 0.2,
                 max_angle: float = 0.5, restart=None, logfile="-", trajectory=None, append_trajectory=False,
                 moment_scale: float = 1.0, max_length_step: float = 0.1, moment_bounds=None, **kwargs):
        if not maxstep > 0 or not 0 < max_angle <= np.pi / 2 or not max_length_step > 0:
            raise ValueError(f"need maxstep > 0 Å, 0 < max_angle ≤ π/2 rad and max_length_step > 0 μB, got {maxstep}, "
                             f"{max_angle}, {max_length_step}")
        self.dofs = SpinLatticeOptimizable(atoms, relax, length_scale, moment_scale=moment_scale,
                                           moment_bounds=moment_bounds)
        self.maxstep, self.max_angle = float(maxstep), float(max_angle)
        self.max_length_step = float(max_length_step)
        self.n_evaluations = 0
        super().__init__(atoms, restart=restart, logfile=logfile, trajectory=trajectory,
                         append_trajectory=append_trajectory, **kwargs)
        self.optimizable = self.dofs

    def todict(self):
        return super().todict() | {"max_angle": self.max_angle}

    def evaluate(self) -> tuple[float, np.ndarray]:
        """Energy (eV) and flat gradient at the current point (one calculator call)."""
        self.n_evaluations += 1
        return self.dofs.get_value(), self.dofs.get_gradient()

    def step_fraction(self, step: np.ndarray) -> float:
        """Size of ``step`` relative to the caps: the largest of max |Δx|/maxstep, max φ/max_angle and
        max |Δ|S||/max_length_step."""
        dpos, dspin = self.dofs.split(step)
        fraction = 0.0
        lengths = self.dofs.lengths_block(step)
        if len(lengths):
            fraction = np.abs(lengths).max() / self.dofs.moment_scale / self.max_length_step
        if len(dpos):
            fraction = max(fraction, np.sqrt(np.einsum("ij,ij->i", dpos, dpos)).max() / self.maxstep)
        if len(dspin):
            angle = np.sqrt(np.einsum("ij,ij->i", dspin, dspin)).max() / self.dofs.length_scale
            fraction = max(fraction, angle / self.max_angle)
        return float(fraction)

    def cap(self, step: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Shrink ``step`` uniformly so no DOF moves more than maxstep Å / max_angle rad (× scale)."""
        fraction = self.step_fraction(step)
        return step * (scale / fraction) if fraction > scale else step


class SpinLBFGS(SpinLatticeOptimizer):
    """L-BFGS on positions × spheres with geodesic spin steps and transported memory.

    Besides the parameters of :class:`SpinLatticeOptimizer`:

    Parameters
    ----------
    memory : number of stored (s, y) pairs.
    alpha : initial Hessian guess, eV/Å² in the scaled units (ASE's default 70). Afterwards the
        initial inverse Hessian is s·y/y·y of the latest pair, doubled after a downhill step along
        which the energy is not convex (random spin starts), so steepest-descent phases speed up.
    energy_tolerance : a step raising the energy by more than this (eV) is rejected; 0 makes
        accepted energies non-increasing. A small positive value absorbs float32 round-off of
        large systems' total energies.
    max_retries : halvings of the trust radius tried within one step before giving up the step.

    Positions, cell and spins set on the atoms between steps or runs make the next step start
    afresh (memory, trust radius and initial Hessian as at construction), since the stored pairs
    describe the landscape along the old path. The restart file keeps the state it belongs to.
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
        self.last_state = None

    def read(self):
        data = self.load()
        self.initialize()
        self.steps_hist = [np.asarray(s) for s in data["steps"]]
        self.changes_hist = [np.asarray(y) for y in data["changes"]]
        self.trust, self.h0 = float(data["trust"]), float(data["h0"])
        self.last_state = tuple(np.asarray(data[key], dtype=float) for key in ("positions", "cell", "spins"))

    def reset_memory(self) -> None:
        self.steps_hist.clear()
        self.changes_hist.clear()

    def step(self):
        if self.changed_outside():
            self.initialize()
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
            self.remember_state()
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
        self.remember_state()
        positions, cell, spins = self.last_state
        self.dump({"steps": self.steps_hist, "changes": self.changes_hist, "trust": self.trust, "h0": self.h0,
                   "positions": positions, "cell": cell, "spins": spins})


class SpinFIRE(SpinLatticeRun, FIRE):
    """ASE's :class:`~ase.optimize.FIRE` on positions × spheres (a :class:`SpinLatticeOptimizable`).

    FIRE moves the flat vector [R, ℓ ŝ]; the optimizable turns the spin block of each move into
    geodesic rotations, so every |S_i| is kept unless ``relax="all"`` frees the lengths too (a change
    δ|S| counts ``moment_scale`` δ|S| Å). As in ASE, ``maxstep`` caps the norm of the whole
    step (Å; a spin rotated by φ counts ℓ φ), unit masses, and Δt in ASE's scaled units; the energy
    may rise on single steps (inertia). Spins, positions or cell set on the atoms between steps or
    runs restart the inertia (velocity zero, ``dt`` and ``astart`` as at construction).

    Parameters: relax, length_scale, moment_scale, moment_bounds as in :class:`SpinLatticeOptimizable`; dt, maxstep, dtmax, Nmin,
    finc, fdec, astart, fa, logfile (``"-"``: standard output), trajectory, append_trajectory as in
    ASE's ``FIRE``. ``run(fmax=, tmax=, steps=)`` converges on forces (eV/Å) and torques (eV/μB).
    """

    def __init__(self, atoms, relax: str = "both", length_scale: float = 1.0, dt: float = 0.1,
                 maxstep: float = 0.2, dtmax: float = 1.0, Nmin: int = 5, finc: float = 1.1, fdec: float = 0.5,
                 astart: float = 0.1, fa: float = 0.99, logfile="-", trajectory=None, append_trajectory=False,
                 moment_scale: float = 1.0, moment_bounds=None):
        self.dofs = SpinLatticeOptimizable(atoms, relax, length_scale, moment_scale=moment_scale,
                                           moment_bounds=moment_bounds)
        self.dt_start = float(dt)
        super().__init__(atoms, logfile=logfile, trajectory=trajectory, dt=dt, maxstep=maxstep, dtmax=dtmax,
                         Nmin=Nmin, finc=finc, fdec=fdec, astart=astart, fa=fa, a=astart,
                         append_trajectory=append_trajectory)
        self.optimizable = self.dofs

    def step(self):
        if self.changed_outside():
            # the velocity, time step and mixing FIRE adapted belong to the old path
            self.vel, self.dt, self.a, self.Nsteps = None, self.dt_start, self.astart, 0
        super().step()
        self.remember_state()


class DampedPrecession(SpinLatticeOptimizer):
    """Baseline: LAMMPS ``min_style spin`` damped precession for spins, steepest descent for positions.

    Spins follow dŝ/dt = λ ŝ × (ω × ŝ) with the adaptive step Δt = 2π/(κ max|ω|) (see
    :func:`damped_precession_angles`); positions move by F/alpha (Å), capped by maxstep. One
    evaluation per step, no memory. ``alpha_damp`` = λ, ``discrete_factor`` = κ, ``alpha`` in eV/Å².

    The rule relies on torques with a longitudinal part (LAMMPS's effective fields and DeepSPIN
    models have one): with purely transverse torques (:class:`~ase_deepspin.calculators.hamiltonian.SpinHamiltonian`)
    the largest rotation stays 2πλ/κ and the iteration cannot converge. κ must suit the calculator:
    near a minimum a step multiplies each mode of M⁻¹H (H the Hessian over spin angles, eV/rad²;
    M = diag |S_i|) by 1 − 2πλ λ_k/(κ max|ω|), with max|ω| there the longitudinal torque, so the
    iteration is stable only for κ > πλ λ_max/max|ω| and removes the stiffest mode in one step at
    twice that. LAMMPS's default κ = 10 suits only weak stiffness against large longitudinal torques.
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
        if self.dofs.move_spins:
            magnetic, unit, _ = self.dofs.magnetic_spins()
            torques = self.dofs.atoms.calc.get_property("magnetic_torques", self.dofs.atoms)[magnetic]
            self.dofs.split(step)[1][:] = self.dofs.length_scale * damped_precession_angles(
                unit, torques, self.alpha_damp, self.discrete_factor)
        self.dofs.move(step)


# relax_spins checks that it ended at a minimum up to this many magnetic atoms (the full spin Hessian: 2M
# Hessian-vector products, or 4M + 1 torque calls without them)
CHECK_MINIMUM_UP_TO = 512


@dataclass(frozen=True)
class SpinRelaxation:
    """What :func:`relax_spins` found. As a bool: true when it converged and no check found a saddle.

    Attributes
    ----------
    converged : max |ω⊥| ≤ tmax was reached.
    minimum : whether the spin Hessian there has no eigenvalue below −``hessian_tolerance``; None when not
        checked (not converged, ``check_minimum`` false, or more magnetic atoms than checked by default).
    lowest_eV_per_rad2 : the lowest eigenvalue of the spin Hessian (:mod:`~ase_deepspin.analysis.stability`), or None.
    escapes : how many times a saddle was left along its most unstable direction.
    """

    converged: bool
    minimum: bool | None
    lowest_eV_per_rad2: float | None
    escapes: int

    def __bool__(self) -> bool:
        return self.converged and self.minimum is not False


def relax_spins(atoms, tmax: float = 1e-4, steps: int = 2000, logfile=None, check_minimum: bool | None = None,
                max_escapes: int = 5, escape_angle: float = 0.1, hessian_tolerance: float = 1e-5) -> SpinRelaxation:
    """Relax spin directions only (|S_i| and positions fixed) with ``atoms.calc`` (geodesic L-BFGS), to a minimum.

    The result is written into ``atoms``' initial magnetic moments. Convergence is max |ω⊥| ≤ ``tmax``
    (eV/μB) within ``steps`` steps. A stationary point need not be a minimum (exact ferromagnetic order under
    antiferromagnetic exchange has no torque at all): with ``check_minimum`` (default: up to
    ``CHECK_MINIMUM_UP_TO`` magnetic atoms) the spin Hessian is computed there
    (:func:`~ase_deepspin.analysis.stability.spin_stability`), and a saddle, an eigenvalue below
    −``hessian_tolerance`` eV/rad², is left by turning the spins ``escape_angle`` rad (the largest turn of
    one spin) along its most unstable mode and relaxing again, at most ``max_escapes`` times.

    Steps that raise the energy are rejected; with a float32 calculator on thousands of atoms, whose
    total energy rounds at ~1e-2 eV, use ``SpinLBFGS(atoms, relax="spins", energy_tolerance=0.02)``.
    Returns a :class:`SpinRelaxation`.
    """
    from ..analysis.stability import spin_stability

    if not 0 < escape_angle < 1 or max_escapes < 0 or hessian_tolerance < 0:
        raise ValueError(f"need 0 < escape_angle < 1 rad, max_escapes >= 0 and hessian_tolerance >= 0 (eV/rad²), got "
                         f"{escape_angle}, {max_escapes}, {hessian_tolerance}")
    if check_minimum is None:
        spins = np.asarray(atoms.get_initial_magnetic_moments())
        check_minimum = spins.ndim == 2 and int(magnetic_mask(spins).sum()) <= CHECK_MINIMUM_UP_TO
    escapes = 0
    while True:
        converged = SpinLBFGS(atoms, relax="spins", logfile=logfile).run(tmax=tmax, steps=steps)
        if not (converged and check_minimum):
            return SpinRelaxation(converged, None, None, escapes)
        stability = spin_stability(atoms)
        if stability.is_minimum(hessian_tolerance) or escapes == max_escapes:
            return SpinRelaxation(True, stability.is_minimum(hessian_tolerance), stability.lowest, escapes)
        spins = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float)
        unit, length = unit_vectors(spins)
        move = stability.unstable_directions(atoms, hessian_tolerance)[0]  # μB per rad, tangent
        angles = np.linalg.norm(move, axis=1) / np.where(length > 0, length, 1.0)
        turned, = geodesic_rotate(unit, move / np.where(length > 0, length, 1.0)[:, None]
                                  * (escape_angle / angles.max()))
        atoms.set_initial_magnetic_moments(turned * length[:, None])
        escapes += 1
