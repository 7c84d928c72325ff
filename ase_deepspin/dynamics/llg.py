"""Landau–Lifshitz–Gilbert spin dynamics (SIB integrator) and spin-lattice dynamics.

Spins are unit vectors ŝ_i with moments μ_i = |S_i| μ_B. In Landau–Lifshitz form

    dŝ/dt = −γ/(1+α²) [ŝ × B + α ŝ × (ŝ × B)] = ŝ × A,   A = −γ/(1+α²) (B + α ŝ × B)

with the effective field B_i = ω_i⊥ / μ_B + B_ext (Tesla), ω = −∂E/∂S the calculator's torques
(eV/μ_B). At temperature T a Gaussian field b_i is added to B_i (Stratonovich), with variance
2 α k_B T / (γ μ_i Δt) per component, so spins with different moments each reach their own
Boltzmann distribution.

SIB (Mentink et al., J. Phys.: Condens. Matter 22, 176001 (2010)): a predictor
ŝ' = cay(ŝ_n, A(ŝ_n) Δt/2), then ŝ_{n+1} = cay(ŝ_n, A(ŝ_mid) Δt/2) with ŝ_mid the normalised
mean of ŝ_n and ŝ'; ``cay`` is the exact implicit-midpoint rotation, so |ŝ| = 1 to round-off.
The same noise enters both stages.

=========  ====================  ================================
symbol     variable              units
=========  ====================  ================================
ŝ          ``unit``              unit spins [N, 3]
μ_i        ``moments``           μ_B
B          ``field``             Tesla
γ          ``gamma``             rad/(fs·T) (electron: 1.7609e-4)
α          ``alpha``             dimensionless, scalar or [N]
Δt         ``dt_fs``             fs
=========  ====================  ================================

Spin-lattice dynamics use the symmetric splitting V(Δt/2) X(Δt/2) [O(Δt) S(Δt)] X(Δt/2) V(Δt/2):
one SIB spin step at the midpoint lattice inside a velocity-Verlet lattice step, with an optional
Langevin (Ornstein–Uhlenbeck) velocity update O for the lattice bath (O and S commute: momenta and
spins). Two model evaluations per step (see :meth:`SpinLatticeDynamics.spin_lattice_step`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from ase import units
from ase.md.md import MolecularDynamics

from ..spins import cayley_rotate, cross, tangent, unit_vectors
from ..units import GAMMA_RAD_PER_FS_T, K_B_EV_PER_K, MU_B_EV_PER_T
from ..system import magnetic_mask

# a closed-form field is rebuilt when a moment changed by more than this (relative): well above the
# round-off walk of |S| over millions of steps, far below any change that matters to a field
MOMENT_RTOL = 1e-10


def precession_vector(unit: np.ndarray, field: np.ndarray, alpha, gamma: float) -> np.ndarray:
    """A of dŝ/dt = ŝ × A for the Landau–Lifshitz equation (rad/fs)."""
    alpha = np.asarray(alpha, dtype=float).reshape(-1, 1) if np.ndim(alpha) else float(alpha)
    return -gamma / (1.0 + alpha**2) * (field + alpha * cross(unit, field))


def thermal_field_std(moments: np.ndarray, alpha, temperature_K: float, dt_fs: float,
                      gamma: float = GAMMA_RAD_PER_FS_T) -> np.ndarray:
    """Standard deviation (Tesla) of each component of the thermal field, per spin [N].

    sqrt(2 α k_B T / (γ μ_i Δt)), μ_i = |S_i| μ_B in eV/T: fluctuation–dissipation for each moment.
    """
    mu = np.asarray(moments, dtype=float) * MU_B_EV_PER_T
    return np.sqrt(2.0 * np.asarray(alpha, dtype=float) * K_B_EV_PER_K * temperature_K / (gamma * mu * dt_fs))


def sib_step(unit: np.ndarray, field_fn: Callable[[np.ndarray], np.ndarray], dt_fs: float, alpha=0.0,
             gamma: float = GAMMA_RAD_PER_FS_T, noise: np.ndarray | None = None,
             field: np.ndarray | None = None) -> np.ndarray:
    """One SIB step of the stochastic LLG equation; returns the new unit spins [N, 3].

    field_fn(unit) -> B [N, 3] Tesla at the given spins; ``field`` may pass B(unit) already known
    (saves one evaluation); ``noise`` is the thermal field [N, 3] Tesla of this step.
    """
    b0 = field_fn(unit) if field is None else field
    if noise is not None:
        b0 = b0 + noise
    predicted = cayley_rotate(unit, 0.5 * dt_fs * precession_vector(unit, b0, alpha, gamma))
    mid, _ = unit_vectors(unit + predicted)
    b1 = field_fn(mid)
    if noise is not None:
        b1 = b1 + noise
    return cayley_rotate(unit, 0.5 * dt_fs * precession_vector(mid, b1, alpha, gamma))


class SpinLatticeDynamics(MolecularDynamics):
    """LLG spin dynamics, optionally coupled to the lattice, for any calculator with torques.

    Parameters
    ----------
    atoms : ASE atoms with (N, 3) spins (initial magnetic moments, μ_B) and a spin calculator.
    dt_fs : time step, fs.
    alpha : Gilbert damping, scalar or per atom (≥ 0).
    temperature_K : spin (and lattice, with ``lattice_friction_per_fs``) bath temperature, K.
    field_T : external field, a 3-vector in Tesla or a function of time in fs returning one.
    lattice : "moving" (velocity Verlet) or "frozen".
    spins : "moving" or "frozen".
    lattice_friction_per_fs : Langevin friction of the lattice bath (0: NVE lattice).
    rng : numpy Generator (explicit, for reproducible noise).
    trajectory, logfile, loginterval : as in ASE; spins are stored in every trajectory frame
        (as initial magnetic moments) and the log has time (fs), potential, kinetic and total
        energy (eV), lattice temperature (K) and magnetisation per magnetic atom (μ_B).
        ``logfile`` is a path, an open file or ``"-"`` (standard output); a file opened here is
        closed by ``close()`` (or leaving a ``with`` block).

    Spins, moments and positions live in ``atoms`` only: every step reads them afresh, so they
    may be changed between runs (magnetic atoms are those with a non-zero moment).
    """

    def __init__(self, atoms, dt_fs: float, alpha=0.0, temperature_K: float = 0.0, field_T=(0.0, 0.0, 0.0),
                 lattice: str = "moving", spins: str = "moving", lattice_friction_per_fs: float = 0.0,
                 gamma: float = GAMMA_RAD_PER_FS_T, rng: np.random.Generator | None = None,
                 trajectory=None, logfile=None, loginterval: int = 1):
        if dt_fs <= 0:
            raise ValueError(f"time step must be positive, got dt_fs={dt_fs}")
        if np.any(np.asarray(alpha) < 0):
            raise ValueError("Gilbert damping alpha must be >= 0")
        if temperature_K < 0:
            raise ValueError(f"temperature must be >= 0 K, got {temperature_K}")
        if lattice not in ("moving", "frozen") or spins not in ("moving", "frozen"):
            raise ValueError("lattice and spins must each be 'moving' or 'frozen'")
        if temperature_K > 0 and not self.couples_to_bath(alpha, lattice_friction_per_fs):
            raise ValueError("a temperature needs damping (alpha > 0) or lattice friction to couple to")
        super().__init__(atoms, timestep=dt_fs * units.fs, trajectory=trajectory, logfile=None,
                         loginterval=loginterval)
        self.dt_fs = float(dt_fs)
        self.alpha = alpha
        self.temperature_K = float(temperature_K)
        if not callable(field_T):
            field_T = np.asarray(field_T, dtype=float)
            if field_T.shape != (3,) or not np.isfinite(field_T).all():
                raise ValueError(f"field_T must be a finite 3-vector in Tesla (or a function of time in fs returning "
                                 f"one), got shape {field_T.shape}")
        self.field_fn = field_T if callable(field_T) else (lambda t, f=field_T: f)
        self.lattice_moving = lattice == "moving"
        self.spins_moving = spins == "moving"
        self.friction = float(lattice_friction_per_fs)
        self.gamma = gamma
        self.rng = rng if rng is not None else np.random.default_rng()
        self.time_fs = 0.0
        atoms.get_potential_energy()  # the calculator checks the structure and spins before any step
        if not magnetic_mask(atoms.get_initial_magnetic_moments()).any():
            raise ValueError("no atom carries a spin: set (N, 3) initial magnetic moments in μB")
        self.closed_form = None  # (field function, (calculator, positions, cell, moments) it was built from)
        self.logfile_handle = None if logfile is None else self.openfile(logfile, comm=self.comm, mode="w")
        if self.logfile_handle is not None:
            self.attach(self.write_log, interval=loginterval)
            self.logfile_handle.write(f"{'time[fs]':>12s} {'Epot[eV]':>16s} {'Ekin[eV]':>12s} {'Etot[eV]':>16s} "
                                      f"{'T[K]':>9s} {'Mx':>8s} {'My':>8s} {'Mz':>8s}\n")

    # ---------------------------------------------------------------- pieces
    @staticmethod
    def couples_to_bath(alpha, lattice_friction_per_fs: float) -> bool:
        """Whether a temperature has something to act through (spin damping or lattice friction)."""
        return bool(np.any(np.asarray(alpha) > 0) or lattice_friction_per_fs > 0)

    def closed_form_field(self, moments: np.ndarray):
        """The calculator's closed-form field B(ŝ) for a frozen lattice, or None (see :meth:`spin_field`).

        Built by ``calc.frozen_lattice_field(atoms)`` from the positions, cell, moments and calculator
        of this moment, and built again whenever one of them has changed (a moment by more than
        round-off: |S| drifts by ~1e-16 per step as spins turn).
        """
        make_field = getattr(self.atoms.calc, "frozen_lattice_field", None)
        if self.lattice_moving or make_field is None:
            return None
        atoms = self.atoms
        if self.closed_form is not None:
            field, (calc, positions, cell, built_moments) = self.closed_form
            if (calc is atoms.calc and np.array_equal(positions, atoms.positions)
                    and np.array_equal(cell, atoms.cell.array)
                    and np.allclose(built_moments, moments, rtol=MOMENT_RTOL, atol=0.0)):
                return field
        self.closed_form = (make_field(atoms), (atoms.calc, atoms.get_positions(), atoms.cell.array.copy(),
                                                moments.copy()))
        return self.closed_form[0]

    def spin_field(self, unit: np.ndarray, moments: np.ndarray, magnetic: np.ndarray, t_fs: float,
                   closed_form=None) -> np.ndarray:
        """Effective field (Tesla) at spins ``unit`` with the lattice where it is: ω⊥/μ_B + B_ext.

        ``moments`` [N] μ_B and ``magnetic`` [N] bool as read at the start of the step (no field on
        non-magnetic atoms). With a ``closed_form`` field (a frozen lattice and a calculator offering
        ``frozen_lattice_field``, as the analytic Hamiltonian does) the calculator is not called and
        the spins are written back only when the step ends.
        """
        if closed_form is not None:
            return closed_form(unit) + self.field_fn(t_fs)
        self.atoms.set_initial_magnetic_moments(unit * moments[:, None])
        return self.torque_field(self.atoms.calc.get_property("magnetic_torques", self.atoms), unit, magnetic, t_fs)

    def torque_field(self, torques: np.ndarray, unit: np.ndarray, magnetic: np.ndarray, t_fs: float) -> np.ndarray:
        """Effective field (Tesla) ω⊥/μ_B + B_ext of torques ω (eV/μB) at spins ``unit``; zero off ``magnetic``."""
        field = tangent(torques, unit) / MU_B_EV_PER_T + self.field_fn(t_fs)
        return np.where(magnetic[:, None], field, 0.0)

    def spin_step(self, t_fs: float, dt_fs: float, torques: np.ndarray | None = None) -> None:
        """Advance the spins by ``dt_fs`` with the lattice where it is (one SIB step). ``torques`` (eV/μB),
        when known at the current spins, give the predictor's field instead of a new evaluation."""
        spins = self.atoms.get_initial_magnetic_moments()
        magnetic = magnetic_mask(spins)
        unit, moments = unit_vectors(spins)
        noise = None
        if self.temperature_K > 0:
            std = np.zeros(len(unit))
            std[magnetic] = thermal_field_std(moments[magnetic], np.broadcast_to(self.alpha, len(unit))[magnetic],
                                              self.temperature_K, dt_fs, self.gamma)
            noise = std[:, None] * self.rng.standard_normal(unit.shape)
        closed_form = self.closed_form_field(moments)
        t_mid = t_fs + 0.5 * dt_fs
        field = None if torques is None else self.torque_field(torques, unit, magnetic, t_mid)
        new = sib_step(unit, lambda s: self.spin_field(s, moments, magnetic, t_mid, closed_form),
                       dt_fs, self.alpha, self.gamma, noise, field=field)
        # rows of non-magnetic atoms stay zero: every SIB stage rotates ŝ = 0 into 0
        self.atoms.set_initial_magnetic_moments(new * moments[:, None])

    def spin_lattice_step(self, t_fs: float) -> None:
        """One step of V(Δt/2) X(Δt/2) [O(Δt) S(Δt)] X(Δt/2) V(Δt/2) in two model evaluations.

        The forces and torques of the step's start are the previous step's last evaluation (ASE's cache).
        They give the first kick and the field of SIB's predictor, the one stage taken at the lattice's
        start rather than its midpoint: that moves the predicted spins by O(Δt²), which SIB's corrector
        (evaluated at the midpoint lattice: the first evaluation) tolerates at second order. The second
        evaluation, at the step's end, gives the last kick and the next step's predictor.
        """
        atoms, dt = self.atoms, self.dt
        masses = atoms.get_masses()[:, None]
        start_torques = atoms.calc.get_property("magnetic_torques", atoms) if self.spins_moving else None
        momenta = atoms.get_momenta() + 0.5 * dt * atoms.get_forces()
        atoms.set_positions(atoms.positions + 0.5 * dt * momenta / masses)
        if self.friction > 0:
            c1 = np.exp(-self.friction * self.dt_fs)
            kT = K_B_EV_PER_K * self.temperature_K
            momenta = c1 * momenta + np.sqrt((1 - c1**2) * kT * masses) * self.rng.standard_normal(momenta.shape)
        if self.spins_moving:
            self.spin_step(t_fs, self.dt_fs, torques=start_torques)
        atoms.set_positions(atoms.positions + 0.5 * dt * momenta / masses)
        atoms.set_momenta(momenta + 0.5 * dt * atoms.get_forces())

    def step(self):
        t, dt = self.time_fs, self.dt_fs
        if not self.lattice_moving:
            if self.spins_moving:
                self.spin_step(t, dt)
        else:
            self.spin_lattice_step(t)
        self.time_fs += dt

    def run(self, steps: int = 50, progress: bool = False):
        """Advance ``steps`` time steps; ``progress`` shows a progress bar (tqdm)."""
        if not progress:
            return super().run(steps)
        from tqdm import tqdm

        with tqdm(total=steps, unit="step", dynamic_ncols=True) as bar:
            for k, _ in enumerate(self.irun(steps)):
                if k:
                    bar.update(1)
                    bar.set_postfix_str(f"t {self.time_fs:.1f} fs")
        return True

    # ---------------------------------------------------------------- observables
    def zeeman_energy(self) -> float:
        """−μ_B Σ B_ext·S_i (eV) of the external field at the current time."""
        return -MU_B_EV_PER_T * float(np.sum(self.atoms.get_initial_magnetic_moments() @ self.field_fn(self.time_fs)))

    def total_energy(self) -> float:
        """Potential (with the external field's Zeeman term) plus kinetic energy, eV."""
        return self.atoms.get_potential_energy() + self.zeeman_energy() + self.atoms.get_kinetic_energy()

    def magnetisation(self) -> np.ndarray:
        """Mean moment per magnetic atom, μ_B."""
        spins = self.atoms.get_initial_magnetic_moments()
        return spins[magnetic_mask(spins)].mean(axis=0)

    def _refresh_properties(self):
        """ASE's loop evaluates forces after every step for its loggers; here observers ask for what
        they need, so a frozen-lattice run with a closed-form field never calls the full calculator."""

    def log(self, gradient=None):
        """ASE's loop calls this every step; the log is written by the ``write_log`` observer instead,
        so that ``loginterval`` applies."""

    def write_log(self):
        """One log line: time, energies, lattice temperature, magnetisation."""
        epot = self.atoms.get_potential_energy() + self.zeeman_energy()
        ekin = self.atoms.get_kinetic_energy()
        m = self.magnetisation()
        self.logfile_handle.write(f"{self.time_fs:12.3f} {epot:16.8f} {ekin:12.6f} {epot + ekin:16.8f} "
                                  f"{self.atoms.get_temperature():9.2f} {m[0]:8.4f} {m[1]:8.4f} {m[2]:8.4f}\n")
        self.logfile_handle.flush()
