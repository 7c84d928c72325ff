"""Small helpers on spin arrays: unit vectors, tangent projection, rotations (all vectorised)."""

from __future__ import annotations

import numpy as np

MU_B_EV_PER_T = 5.7883818060e-5  # Bohr magneton, eV/T


def unit_vectors(spins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions ŝ (N, 3) and lengths |S| (N,) of moments; zero rows stay zero."""
    norm = np.linalg.norm(spins, axis=1)
    unit = np.divide(spins, norm[:, None], out=np.zeros_like(spins, dtype=float), where=norm[:, None] > 0)
    return unit, norm


def tangent(vectors: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Component of ``vectors`` perpendicular to the unit vectors ``unit`` (row-wise)."""
    return vectors - np.sum(vectors * unit, axis=1, keepdims=True) * unit


def cayley_rotate(unit: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Solve x = s + (s + x) × a for x (the implicit midpoint rule of ds/dt = s × A, a = A dt/2).

    The solution x = s + 2 (s × a + (s × a) × a) / (1 + a²) is a rotation of s, so |x| = |s|
    to round-off; written as an increment so that rounding scales with the small step.
    """
    a2 = np.sum(a * a, axis=1, keepdims=True)
    sxa = np.cross(unit, a)
    return unit + (2.0 / (1.0 + a2)) * (sxa + np.cross(sxa, a))
