"""Scalar spin chirality on the triangular lattice (ase_deepspin.analysis.chirality)."""

import numpy as np
import pytest

from ase_deepspin.analysis.chirality import scalar_chirality, triangle_sites
from ase_deepspin.build import tetrahedral_spins, triangular_lattice


def test_tetrahedral_order_has_one_chirality_on_every_triangle():
    size = (6, 4)
    up, down = scalar_chirality(tetrahedral_spins(size), size)
    value = 4 / (3 * np.sqrt(3))
    assert abs(abs(up[0, 0]) - value) < 1e-12
    np.testing.assert_allclose(np.concatenate([up.ravel(), down.ravel()]), up[0, 0], atol=1e-12)
    # time reversal flips every chirality; a coplanar state has none
    np.testing.assert_allclose(scalar_chirality(-tetrahedral_spins(size), size)[0], -up, atol=1e-12)
    coplanar = np.array([[np.cos(p), np.sin(p), 0.0] for p in np.random.default_rng(0).uniform(0, 6.3, 24)])
    assert np.abs(np.concatenate(scalar_chirality(coplanar, size))).max() < 1e-12


def test_triangles_are_counter_clockwise_nearest_neighbour_triples():
    size = (5, 3)
    positions = triangular_lattice(size, a=1.0).positions
    cell = triangular_lattice(size, a=1.0).cell.array
    for triangles in triangle_sites(size):
        for a, b, c in triangles:
            edges = []
            for p, q in ((a, b), (b, c), (c, a)):  # minimum-image bond vectors
                d = positions[q] - positions[p]
                frac = np.linalg.solve(cell[:2, :2].T, d[:2])
                d[:2] -= np.round(frac) @ cell[:2, :2]
                edges.append(d)
            np.testing.assert_allclose([np.linalg.norm(e) for e in edges], 1.0, atol=1e-12)
            assert np.cross(edges[0], edges[1])[2] > 0  # counter-clockwise


def test_bad_spins_are_refused():
    with pytest.raises(ValueError, match="N = 2 × 2"):
        scalar_chirality(np.ones((5, 3)), (2, 2))
    with pytest.raises(ValueError, match="every site needs a spin"):
        scalar_chirality(np.zeros((4, 3)), (2, 2))



def test_domain_size_is_the_wall_spacing_and_grows_with_the_domains():
    from ase_deepspin.analysis.chirality import domain_size

    a, n = 2.5, 48
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    for width in (2, 4, 8):  # stripes `width` rows wide: walls width·a·√3/2 apart
        assert domain_size(np.where((i // width) % 2 == 0, 0.77, -0.77), a) == pytest.approx(width * a * np.sqrt(3) / 2)
    i, j = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    sizes = [domain_size(np.where((i // w + j // w) % 2 == 0, 1.0, -1.0), a) for w in (4, 8, 16)]
    # doubling the blocks doubles L, up to the corners' share of the walls
    assert sizes[1] / sizes[0] == pytest.approx(2, rel=0.1) and sizes[2] / sizes[1] == pytest.approx(2, rel=0.1)
    with pytest.raises(ValueError, match="one sign"):
        domain_size(np.ones((4, 4)), a)
