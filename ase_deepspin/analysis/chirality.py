"""Scalar spin chirality on the triangular lattice, the order parameter of non-coplanar (tetrahedral) order.

For a triangle of sites a, b, c taken counter-clockwise, χ = ŝ_a · (ŝ_b × ŝ_c) (unit spins; −1 ≤ χ ≤ 1, 0 for
coplanar spins). On the lattice of :func:`~ase_deepspin.build.triangular_lattice` (site (i, j) = atom
i·n2 + j at i a1 + j a2) every site has an up triangle (i, j), (i+1, j), (i, j+1) and a down triangle
(i+1, j), (i+1, j+1), (i, j+1), both counter-clockwise, periodic. The tetrahedral (triple-Q) order has the
same χ = ±4/(3√3) ≈ ±0.770 on every triangle; its two signs are the domains that coarsen after a quench.
"""

from __future__ import annotations

import numpy as np


def triangle_sites(size) -> tuple[np.ndarray, np.ndarray]:
    """Atom indices [n1·n2, 3] of the up and of the down triangles, counter-clockwise, one of each per site."""
    n1, n2 = (int(v) for v in size)
    i, j = np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij")
    i, j = i.ravel(), j.ravel()

    def site(a, b):
        return (a % n1) * n2 + (b % n2)

    up = np.stack([site(i, j), site(i + 1, j), site(i, j + 1)], axis=1)
    down = np.stack([site(i + 1, j), site(i + 1, j + 1), site(i, j + 1)], axis=1)
    return up, down


def scalar_chirality(spins: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """χ of the up and of the down triangles, each [n1, n2], from spins (N, 3) (any lengths; unit vectors
    are used) of a triangular lattice of ``size`` (n1, n2)."""
    spins = np.asarray(spins, dtype=float)
    n1, n2 = (int(v) for v in size)
    if spins.shape != (n1 * n2, 3):
        raise ValueError(f"need spins (N, 3) with N = {n1} × {n2}, got shape {spins.shape}")
    lengths = np.linalg.norm(spins, axis=1, keepdims=True)
    if np.any(lengths == 0):
        raise ValueError("every site needs a spin for the chirality")
    unit = spins / lengths
    result = []
    for triangles in triangle_sites(size):
        a, b, c = unit[triangles[:, 0]], unit[triangles[:, 1]], unit[triangles[:, 2]]
        result.append(np.einsum("ij,ij->i", a, np.cross(b, c)).reshape(n1, n2))
    return result[0], result[1]


def domain_size(field: np.ndarray, a: float) -> float:
    """Domain size L (Å) of the signs of a scalar field [n1, n2] on the sites of
    :func:`~ase_deepspin.build.triangular_lattice` (spacing ``a``, Å), from its wall density: with f the
    fraction of nearest-neighbour bonds (all three directions, periodic) whose ends differ in sign,
    L = a/(√3 f), the spacing of straight parallel walls (stripes w rows wide: L = w a √3/2). The inverse
    wall length per area is the standard measure of coarsening; unlike the first moment of the structure
    factor it does not depend on how sharp the walls are."""
    field = np.asarray(field, dtype=float)
    if field.ndim != 2:
        raise ValueError(f"need a field [n1, n2] on the lattice sites, got shape {field.shape}")
    sign = np.sign(field)
    crossing = [sign != np.roll(sign, -1, axis=0), sign != np.roll(sign, -1, axis=1),
                np.roll(sign, -1, axis=0) != np.roll(sign, -1, axis=1)]
    fraction = float(np.mean(crossing))
    if fraction == 0.0:
        raise ValueError("a field of one sign has no domain walls")
    return a / (np.sqrt(3.0) * fraction)
