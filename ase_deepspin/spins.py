"""The sphere-geometry toolkit of spin arrays (all vectorised): unit vectors, tangent projection,
rotations, geodesics (angles, log and exp maps, great-circle interpolation) and tangent frames."""

from __future__ import annotations

import numpy as np



def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise a × b of (N, 3) arrays (several times faster than ``np.cross`` on this shape)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    np.subtract(a1 * b2, a2 * b1, out=out[..., 0])
    np.subtract(a2 * b0, a0 * b2, out=out[..., 1])
    np.subtract(a0 * b1, a1 * b0, out=out[..., 2])
    return out


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise a·b of (N, 3) arrays, shape (N, 1)."""
    return np.einsum("ij,ij->i", a, b)[:, None]


def unit_vectors(spins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions ŝ (N, 3) and lengths |S| (N,) of moments; zero rows stay zero."""
    norm = np.sqrt(np.einsum("ij,ij->i", spins, spins))
    unit = np.divide(spins, norm[:, None], out=np.zeros_like(spins, dtype=float), where=norm[:, None] > 0)
    return unit, norm


def tangent(vectors: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Component of ``vectors`` perpendicular to the unit vectors ``unit`` (row-wise)."""
    return vectors - dot(vectors, unit) * unit


def cayley_rotate(unit: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Solve x = s + (s + x) × a for x (the implicit midpoint rule of ds/dt = s × A, a = A dt/2).

    The solution x = s + 2 (s × a + (s × a) × a) / (1 + a²) is a rotation of s, so |x| = |s|
    to round-off; written as an increment so that rounding scales with the small step.
    """
    sxa = cross(unit, a)
    return unit + (2.0 / (1.0 + dot(a, a))) * (sxa + cross(sxa, a))


# ---------------------------------------------------------------------------------------- geodesics
ANTIPARALLEL_RAD = 1e-8  # below this distance from π a great circle to the target is not unique


def _rows_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a·b over the last axis, any leading shape."""
    return np.einsum("...i,...i->...", a, b)


def spin_angles(unit_a: np.ndarray, unit_b: np.ndarray) -> np.ndarray:
    """Angles (rad) between unit vectors, row-wise over the last axis; accurate near 0 and π."""
    # atan2 of |a × b| and a·b: arccos(a·b) loses half the digits near 0 and π
    return np.arctan2(np.linalg.norm(cross(unit_a, unit_b), axis=-1), _rows_dot(unit_a, unit_b))


def _fallback_direction(unit: np.ndarray, rotation_axis) -> np.ndarray:
    """Unit tangent directions at ``unit`` for antiparallel targets: a rotation about ``rotation_axis``
    (3,), or about the Cartesian axis least aligned with each spin when none is given."""
    if rotation_axis is None:
        axes = np.eye(3)[np.argmin(np.abs(unit), axis=-1)]
    else:
        axes = np.broadcast_to(np.asarray(rotation_axis, dtype=float), unit.shape)
    direction = cross(axes, unit)
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    if rotation_axis is not None and np.any(norm < 1e-8):
        raise ValueError("rotation_axis is parallel to a spin that must turn by 180°: choose another axis")
    return direction / np.where(norm > 0, norm, 1.0)


def geodesic_log(unit: np.ndarray, target: np.ndarray, rotation_axis=None) -> np.ndarray:
    """Tangent vectors at ``unit`` pointing along great circles to ``target``, of length the angle (rad).

    Unit vectors [..., 3] in, tangent vectors [..., 3] out. Rows of zeros (non-magnetic atoms)
    give zeros. Antiparallel pairs, whose great circle is not unique, turn about
    ``rotation_axis`` (3,), or about the Cartesian axis least aligned with the spin.
    """
    perp = target - _rows_dot(unit, target)[..., None] * unit
    angle = spin_angles(unit, target)
    norm = np.linalg.norm(perp, axis=-1)
    antiparallel = angle > np.pi - ANTIPARALLEL_RAD
    direction = np.divide(perp, norm[..., None], out=np.zeros_like(perp), where=norm[..., None] > 0)
    if antiparallel.any():
        direction = np.where(antiparallel[..., None], _fallback_direction(unit, rotation_axis), direction)
    return angle[..., None] * direction


def geodesic_exp(unit: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Move unit vectors [..., 3] along great circles by tangent ``step`` vectors (length = angle, rad).

    ŝ → ŝ cos|θ| + θ̂ sin|θ|, the inverse of :func:`geodesic_log`.
    """
    angle = np.linalg.norm(step, axis=-1, keepdims=True)
    direction = np.divide(step, angle, out=np.zeros_like(step), where=angle > 0)
    return unit * np.cos(angle) + direction * np.sin(angle)


def geodesic_rotate(unit: np.ndarray, theta: np.ndarray, *vectors: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rotate unit spins [M, 3] along great circles by tangent vectors ``theta`` [M, 3] (rad),
    carrying tangent ``vectors`` along (parallel transport).

    Each ŝ_i turns by |θ_i| about k̂_i = ŝ_i × θ̂_i, so ŝ_i → ŝ_i cos|θ_i| + θ̂_i sin|θ_i| (as
    :func:`geodesic_exp`); every array in ``vectors`` ([M, 3], tangent at ŝ) is rotated the same
    way. Returns the rotated spins followed by the transported vectors (L-BFGS keeps its stored
    pairs in the tangent plane of the current spins this way).
    """
    angle = np.sqrt(np.einsum("ij,ij->i", theta, theta))[:, None]
    # a unit axis keeps the map orthogonal to round-off, so |ŝ| errors add up instead of compounding
    axis, _ = unit_vectors(cross(unit, theta))
    cos, sin = np.cos(angle), np.sin(angle)

    def rotate(v):
        return v * cos + cross(axis, v) * sin + axis * (dot(axis, v) * (1.0 - cos))

    return (rotate(unit), *(rotate(v) for v in vectors))


def interpolate_spins(spins_a: np.ndarray, spins_b: np.ndarray, fractions, rotation_axis=None) -> np.ndarray:
    """Spins [len(fractions), N, 3] (μB) along per-atom great circles from ``spins_a`` to ``spins_b``.

    Directions follow the geodesic (slerp) at constant angular speed; magnitudes are interpolated
    linearly, so equal magnitudes at the ends are kept exactly. Fraction 0 and 1 reproduce the
    endpoints. Spins turning by 180° rotate about ``rotation_axis`` (3,), or about the Cartesian
    axis least aligned with the spin when none is given.
    """
    fractions = np.asarray(fractions, dtype=float)
    unit_a, norm_a = unit_vectors(np.asarray(spins_a, dtype=float))
    unit_b, norm_b = unit_vectors(np.asarray(spins_b, dtype=float))
    step = geodesic_log(unit_a, unit_b, rotation_axis)  # [N, 3]
    t = fractions[:, None, None]
    directions = geodesic_exp(np.broadcast_to(unit_a, (len(fractions), *unit_a.shape)), t * step)
    spins = directions * ((1 - t) * norm_a[:, None] + t * norm_b[:, None])
    spins[fractions == 0.0] = spins_a  # exact ends, not a round-off away from them
    spins[fractions == 1.0] = spins_b
    return spins


# ---------------------------------------------------------------------------------------- frames
def rotation_about(axis: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices [n, 3, 3] by ``angles`` [n] (rad) about the vector ``axis`` (3,) (Rodrigues)."""
    n = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    K = np.array([[0, -n[2], n[1]], [n[2], 0, -n[0]], [-n[1], n[0], 0]])
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def tangent_frames(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-handed orthonormal tangent vectors (e1, e2) [N, 3] with e1 × e2 = ŝ for unit rows ŝ [N, 3]."""
    # the helper axis is x unless ŝ is nearly along x, so that e1 never comes from a tiny cross product
    helper = np.where(np.abs(unit[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = helper - np.einsum("ij,ij->i", helper, unit)[:, None] * unit
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, cross(unit, e1)
