"""Spin-lattice dynamics with moments whose length changes (longitudinal spin fluctuations).

Each moment S_i = m_i ŝ_i moves in the full 3-D space of S. The direction follows the stochastic
LLG equation of :mod:`~ase_deepspin.dynamics.llg` (SIB, Gilbert damping α, thermal field); the
length follows the radial part of overdamped Langevin dynamics in 3-D,

    dS_∥ = λ f_i dt + √(2 λ k_B T) dW,    f_i = ω_i·ŝ_i + μ_B B_ext·ŝ_i = −∂(E − μ_B B_ext·S)/∂|S_i|,

with a constant longitudinal mobility λ = α_∥ γ / μ_B (μB²/(eV·fs)): α_∥ (``longitudinal_damping``,
dimensionless) is the longitudinal relaxation rate in units of the precession rate of a 1 μB moment,
as in the longitudinal damping of Ma and Dudarev, Phys. Rev. B 86, 054416 (2012), whose constant
γ_s H damping term this is. With the 3-D Wiener increment, the length's stationary law is
m² exp(−E/k_BT) (the Jacobian of 3-D space) and the transverse step samples exp(−E/k_BT) on each
sphere, so the pair samples P(S) ∝ exp(−E/k_BT) d³S. The Zeeman term is not in the calculator's
torques, so it enters f explicitly.

The length step (:func:`longitudinal_step`) takes S_∥ = m ŝ one Euler–Maruyama step in 3-D with the
radial force and keeps the new vector's length, m' = |(m + λ f Δt) ê_∥ + √(2 λ k_BT Δt) ξ|, ξ a 3-D
standard normal: the Bessel-process form of the radial motion, in which m' ≥ 0 always and the
2 k_BT/m drift of the Jacobian needs no evaluation near m = 0 (where it diverges). Rule for
|S| → 0: the length reflects at zero (the direction is the transverse dynamics' to move), and is
kept ≥ ``MIN_LENGTH`` so that a magnetic atom never loses its direction. The stationary law is
exact to O(λ k Δt), k = ∂²E/∂m² the on-site stiffness: keep λ k Δt ≲ 0.01 (for FCC Fe, k ≈ 1 eV/μB²
near the minimum, λ ≈ 3 α_∥ μB²/(eV·fs): α_∥ = 0.01 wants Δt ≲ 0.3 fs).

One step: the length moves with the torques of the step's start, then SIB turns the direction at the
new lengths, its predictor field taken from the same start-of-step torques; with the lattice moving,
this spin step sits where :class:`~ase_deepspin.dynamics.llg.SpinLatticeDynamics` puts its SIB step.
Evaluations per step are those of SIB (two). With α_∥ = 0 the length never changes and the step is
exactly SIB.

=========  ==========================  ============================================
symbol     variable                    units
=========  ==========================  ============================================
m          ``lengths``                 μB
f          ``force``                   eV/μB (−∂E/∂|S|, Zeeman included)
α_∥        ``longitudinal_damping``    dimensionless
λ          ``mobility``                μB²/(eV·fs)
=========  ==========================  ============================================
"""

from __future__ import annotations

import numpy as np

from ..spins import dot, unit_vectors
from ..units import GAMMA_RAD_PER_FS_T, K_B_EV_PER_K, MU_B_EV_PER_T
from ..system import magnetic_mask
from .llg import SpinLatticeDynamics

MIN_LENGTH = 1e-6  # μB: a moment keeps a direction (and so stays a magnetic atom's spin)


def check_lengths_determined(atoms) -> None:
    """Ask ``atoms.calc`` whether it determines moment lengths (its ``check_longitudinal(atoms)``, which
    raises ValueError if not); calculators without that method are trusted. Used by everything that
    changes |S| (longitudinal dynamics, ``relax="all"``)."""
    if atoms.calc is None:
        raise ValueError("the atoms have no calculator: attach a spin calculator first")
    check = getattr(atoms.calc, "check_longitudinal", None)
    if check is not None:
        check(atoms)


def longitudinal_mobility(longitudinal_damping: float, gamma: float = GAMMA_RAD_PER_FS_T) -> float:
    """λ = α_∥ γ / μ_B in μB²/(eV·fs): dm/dt = λ f for a force f in eV/μB."""
    return float(longitudinal_damping) * gamma / MU_B_EV_PER_T


def longitudinal_step(lengths: np.ndarray, force: np.ndarray, mobility: float, temperature_K: float,
                      dt_fs: float, rng: np.random.Generator | None = None,
                      min_length: float = MIN_LENGTH) -> np.ndarray:
    """New moment lengths (μB) [M] after one radial Langevin step of ``dt_fs`` (see the module docstring).

    ``force`` = −∂E/∂|S| (eV/μB) [M] at ``lengths``; ``mobility`` λ in μB²/(eV·fs); at T > 0 ``rng``
    draws the 3-D noise.
    """
    drift = lengths + mobility * force * dt_fs
    if temperature_K > 0 and mobility > 0:
        sigma = np.sqrt(2.0 * mobility * K_B_EV_PER_K * temperature_K * dt_fs)
        xi = sigma * rng.standard_normal((len(lengths), 3))
        new = np.sqrt((drift + xi[:, 0]) ** 2 + xi[:, 1] ** 2 + xi[:, 2] ** 2)
    else:
        new = np.abs(drift)
    return np.maximum(new, min_length)


class LongitudinalSpinLatticeDynamics(SpinLatticeDynamics):
    """Stochastic spin(-lattice) dynamics in which moment lengths change, for any calculator with torques.

    Parameters are those of :class:`~ase_deepspin.dynamics.llg.SpinLatticeDynamics` (``alpha``: the
    transverse Gilbert damping) and

    longitudinal_damping : α_∥ ≥ 0, dimensionless (λ = α_∥ γ/μ_B, see the module docstring).
    min_length : μB, the smallest moment length kept (the |S| → 0 rule).

    The calculator must determine moment lengths: one with a ``check_longitudinal(atoms)`` method
    (:class:`~ase_deepspin.calculators.deepspin.DeepSpinCalculator`, whose training data must have varied |S|;
    :class:`~ase_deepspin.calculators.hamiltonian.SpinHamiltonian`, which needs an on-site term) is asked before
    the first step and its ValueError is raised as it is; other calculators are trusted.
    :meth:`mean_length` gives ⟨|S|⟩ for observers.
    """

    def __init__(self, atoms, dt_fs: float, alpha=0.0, longitudinal_damping: float = 0.0,
                 min_length: float = MIN_LENGTH, **kwargs):
        if not longitudinal_damping >= 0:
            raise ValueError(f"longitudinal damping must be >= 0, got {longitudinal_damping}")
        if not min_length > 0:
            raise ValueError(f"min_length must be positive (μB), got {min_length}")
        check_lengths_determined(atoms)
        self.longitudinal_damping = float(longitudinal_damping)
        self.min_length = float(min_length)
        super().__init__(atoms, dt_fs, alpha=alpha, **kwargs)
        self.mobility = longitudinal_mobility(self.longitudinal_damping, self.gamma)
        # magnetism is fixed at the start: lengths change, which atoms carry a spin does not
        self.magnetic = magnetic_mask(atoms.get_initial_magnetic_moments())

    def couples_to_bath(self, alpha, lattice_friction_per_fs: float) -> bool:
        return self.longitudinal_damping > 0 or super().couples_to_bath(alpha, lattice_friction_per_fs)

    def closed_form_field(self, moments: np.ndarray):
        """None: a closed-form field is built for fixed lengths, and here they change every step."""
        return None

    def spin_step(self, t_fs: float, dt_fs: float, torques: np.ndarray | None = None) -> None:
        """Lengths by one radial Langevin step, then directions by one SIB step at the new lengths."""
        atoms = self.atoms
        if torques is None:
            torques = atoms.calc.get_property("magnetic_torques", atoms)
        if self.mobility > 0:
            unit, lengths = unit_vectors(atoms.get_initial_magnetic_moments())
            magnetic = self.magnetic
            field = self.field_fn(t_fs + 0.5 * dt_fs)
            force = dot(torques, unit)[:, 0] + MU_B_EV_PER_T * (unit @ field)
            lengths[magnetic] = longitudinal_step(lengths[magnetic], force[magnetic], self.mobility,
                                                  self.temperature_K, dt_fs, self.rng, self.min_length)
            atoms.set_initial_magnetic_moments(unit * lengths[:, None])
        super().spin_step(t_fs, dt_fs, torques=torques)

    def mean_length(self) -> float:
        """⟨|S|⟩ over the magnetic atoms, μB."""
        return float(np.linalg.norm(self.atoms.get_initial_magnetic_moments()[self.magnetic], axis=1).mean())
