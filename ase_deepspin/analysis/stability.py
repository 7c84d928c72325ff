"""Is a spin state a minimum? The spin Hessian over directions, at fixed moment lengths.

A stationary spin state (every torque along its spin) is a minimum of E only if the Hessian of E
over the 2 tangent angles of every magnetic moment is positive semi-definite. With each moment
turned by angles (θ_a, θ_b) along its tangent frame (e_a, e_b) (``spins.tangent_frames``),

    H_(ia)(jb) = ∂²E/∂θ_ia ∂θ_jb = |S_i| |S_j| e_ia·(∂²E/∂S_i ∂S_j) e_jb + δ_ij δ_ab (S_i·ω_i)

in eV/rad², with ω = −∂E/∂S the torques (eV/μB); the second term is the curvature of the sphere.
Zero modes come from symmetries (rotating all spins of a model without spin–orbit coupling: two
about the axes perpendicular to a collinear state); a negative eigenvalue is a direction along
which the state falls.

The Hessian columns come from the calculator's exact Hessian-vector products when it offers
``spin_hessian_vector_products`` (DeepSpinCalculator), and from central differences of torques
otherwise. A state that is not stationary has no meaningful Hessian: the residual transverse
torque is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spins import cross, tangent_frames, unit_vectors
from ..system import magnetic_mask

__all__ = ["SpinStability", "spin_stability"]


@dataclass(frozen=True)
class SpinStability:
    """The spin Hessian of a state and what it says.

    Attributes
    ----------
    hessian : (2M, 2M) eV/rad² over the tangent angles of the M magnetic atoms (atom-major, then a, b).
    eigenvalues : (2M,) eV/rad², ascending.
    modes : (2M, 2M) eigenvectors (columns), in the same coordinates.
    magnetic : (M,) indices of the magnetic atoms in the Atoms.
    max_torque : eV/μB, the largest transverse torque |ŝ × ω| of the state (0 at a stationary point).
    """

    hessian: np.ndarray
    eigenvalues: np.ndarray
    modes: np.ndarray
    magnetic: np.ndarray
    max_torque: float

    @property
    def lowest(self) -> float:
        """The lowest eigenvalue (eV/rad²)."""
        return float(self.eigenvalues[0])

    def is_minimum(self, tolerance: float = 1e-6) -> bool:
        """True when no eigenvalue lies below −``tolerance`` (eV/rad²)."""
        return self.lowest >= -tolerance

    def unstable_directions(self, atoms, tolerance: float = 1e-6) -> np.ndarray:
        """(K, N, 3) unit-norm spin displacements (μB per rad) along the K modes below −``tolerance``."""
        spins = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float)
        unit, length = unit_vectors(spins[self.magnetic])
        e_a, e_b = tangent_frames(unit)
        out = []
        for k in np.nonzero(self.eigenvalues < -tolerance)[0]:
            angles = self.modes[:, k].reshape(-1, 2)
            move = np.zeros_like(spins)
            move[self.magnetic] = length[:, None] * (angles[:, :1] * e_a + angles[:, 1:] * e_b)
            out.append(move)
        return np.array(out).reshape(-1, len(atoms), 3)


def spin_stability(atoms, step_rad: float = 1e-4) -> SpinStability:
    """The spin Hessian of ``atoms`` at its current spins (initial magnetic moments, (N, 3) μB).

    Parameters
    ----------
    atoms : Atoms with a spin calculator (``magnetic_torques``); positions and moment lengths fixed.
    step_rad : turning angle (rad) of the central differences, used only when the calculator has no
        ``spin_hessian_vector_products``; the error is O(step²).

    Returns
    -------
    SpinStability. Cost: one forward and 2M backward passes with exact products, 4M + 1 torque
    calls with differences.
    """
    if atoms.calc is None:
        raise ValueError("atoms has no calculator: attach a spin calculator providing magnetic_torques")
    if not 0 < step_rad < 0.1:
        raise ValueError(f"step_rad must be a small positive angle (rad), got {step_rad}")
    spins = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float)
    if spins.ndim != 2:
        raise ValueError("spin_stability needs non-collinear moments, shape (N, 3) μB")
    magnetic = np.nonzero(magnetic_mask(spins))[0]
    if len(magnetic) == 0:
        raise ValueError("atoms has no magnetic moment: nothing to turn")
    unit, length = unit_vectors(spins[magnetic])
    e_a, e_b = tangent_frames(unit)
    m = len(magnetic)
    # displacement of all spins (μB) per unit angle of each coordinate (i, a): [2M, N, 3]
    frame = np.stack([e_a, e_b], axis=1)  # [M, 2, 3] tangent directions e_ia
    moves = np.zeros((m, 2, len(atoms), 3))
    moves[np.arange(m), :, magnetic] = length[:, None, None] * frame
    moves = moves.reshape(2 * m, len(atoms), 3)
    calc = atoms.calc
    if hasattr(calc, "spin_hessian_vector_products"):
        products, torques = calc.spin_hessian_vector_products(atoms, moves)
    else:
        torques = calc.get_magnetic_torques(atoms)
        products = np.empty_like(moves)
        try:
            for k in range(2 * m):
                i, a = divmod(k, 2)
                columns = []
                for angle in (step_rad, -step_rad):  # turn spin i along its geodesic through e_ia
                    trial = spins.copy()
                    trial[magnetic[i]] = length[i] * (np.cos(angle) * unit[i] + np.sin(angle) * frame[i, a])
                    atoms.set_initial_magnetic_moments(trial)
                    columns.append(-calc.get_magnetic_torques(atoms))
                products[k] = (columns[0] - columns[1]) / (2 * step_rad)
        finally:
            atoms.set_initial_magnetic_moments(spins)
    turns = frame * length[:, None, None]  # [M, 2, 3] ∂S_i/∂θ_ia
    hessian = np.einsum("iax,kix->kia", turns, products[:, magnetic]).reshape(2 * m, 2 * m)
    along = np.einsum("ix,ix->i", spins[magnetic], torques[magnetic])  # S_i·ω_i, eV
    hessian[np.diag_indices(2 * m)] += np.repeat(along, 2)
    hessian = 0.5 * (hessian + hessian.T)
    eigenvalues, modes = np.linalg.eigh(hessian)
    transverse = np.linalg.norm(cross(unit, torques[magnetic]), axis=1)
    return SpinStability(hessian, eigenvalues, modes, magnetic, float(transverse.max()))

