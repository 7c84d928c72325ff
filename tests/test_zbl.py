"""The ZBL short-range wall: closed form, smoothness, zero on training data, a wall for the shipped model."""

import numpy as np
import pytest
import torch
from ase import Atoms

from ase_deepspin import DeepSpinCalculator, compress_model
from ase_deepspin.build import nio_afm
from ase_deepspin.io.frames import read_frames
from ase_deepspin.model import DeepSpinModel
from ase_deepspin.model.ranges import shortest_distances
from ase_deepspin.model.zbl import ZBLWall
from ase_deepspin.training.config import nuclear_charges
from ase_deepspin.training.train import PreparedFrames, evaluate, resolve_wall
from conftest import NIO_DATA, needs_nio_data, small_model

R_INNER, R_OUTER = 1.2, 1.9


def closed_form(r, z1, z2):
    """Ziegler, Biersack & Littmark (1985): universal screening, e²/4πε0 = 14.399645 eV·Å."""
    a = 0.46850 / (z1**0.23 + z2**0.23)
    x = r / a
    phi = 0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x) + 0.28022 * np.exp(-0.40290 * x) \
        + 0.02817 * np.exp(-0.20162 * x)
    return 14.399645 * z1 * z2 / r * phi


def dimer_energy(wall, r):
    """Wall energy (eV) of a Ni–O pair at distance r (Å), both directed edges."""
    vectors = torch.tensor([[r, 0.0, 0.0], [-r, 0.0, 0.0]], dtype=torch.float64)
    edges = torch.tensor([0, 1])
    return float(wall.atomic_energies(torch.tensor([0, 1]), edges, edges.flip(0), vectors, 0, 2).sum())


@pytest.fixture
def wall():
    table = lambda v: [[v, v], [v, v]]  # noqa: E731
    return ZBLWall([28, 8], table(R_INNER), table(R_OUTER), torch.float64)


def test_inside_r_inner_the_wall_is_the_zbl_closed_form(wall):
    for r in (0.3, 0.7, 1.0, 1.19):
        assert dimer_energy(wall, r) == pytest.approx(closed_form(r, 28, 8), rel=1e-12)
    assert closed_form(1.0, 28, 8) > 40.0  # tens of eV at 1 Å: a wall


def test_the_wall_switches_off_smoothly_to_exactly_zero_at_r_outer(wall):
    assert dimer_energy(wall, R_OUTER) == 0.0 and dimer_energy(wall, 2.5) == 0.0
    h = 1e-4
    grid = np.arange(R_INNER - 0.2, R_OUTER + 0.2, h)
    energy = np.array([dimer_energy(wall, r) for r in grid])
    slope, curvature = np.diff(energy) / h, np.diff(energy, 2) / h**2
    # E, dE/dr and d²E/dr² have no jumps across either end of the switch: steps between grid points
    # stay of the order the grid resolves, far below the values they take in the blending region
    for values in (energy, slope, curvature):
        assert np.abs(np.diff(values)).max() < 2e-2 * np.abs(values).max()
    assert np.abs(np.diff(curvature)).max() < 1e-3 * np.abs(curvature).max()
    assert np.all(slope[grid[:-1] < R_OUTER - h] < 0)  # repulsive throughout


def test_model_forces_include_the_wall_and_match_finite_differences():
    model = small_model(short_range={"type": "zbl", "charges": [28, 8], "r_inner": [[1.0, 1.0], [1.0, 1.0]],
                                     "r_outer": [[2.0, 2.0], [2.0, 2.0]]})
    atoms = nio_afm(repeat=(2, 2, 1))
    o = atoms.get_chemical_symbols().index("O")
    ni = int(np.argmin([atoms.get_distance(o, k, mic=True) if s == "Ni" else 9 for k, s in
                        enumerate(atoms.get_chemical_symbols())]))
    bond = atoms.get_distance(ni, o, mic=True, vector=True)
    atoms.positions[o] -= 0.4 * bond / np.linalg.norm(bond)  # 1.65 Å: in the blending region
    for calc in (DeepSpinCalculator(model), DeepSpinCalculator(compress_model(model))):
        forces = calc.get_forces(atoms)
        h = 1e-5
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[o, k] += h
            minus.positions[o, k] -= h
            fd = -(calc.get_potential_energy(plus) - calc.get_potential_energy(minus)) / (2 * h)
            assert forces[o, k] == pytest.approx(fd, abs=1e-6 * max(1.0, abs(fd)))
        without = DeepSpinCalculator(small_model()).get_potential_energy(atoms)
        assert calc.get_potential_energy(atoms) - without > 0.05  # the wall is there


@needs_nio_data
def test_training_frames_energies_are_unchanged_by_the_wall():
    frames = read_frames(NIO_DATA)
    model = small_model(rcut=5.6, rcut_smth=5.4, sel=[60, 60])
    items = PreparedFrames(frames, model).items
    walled = DeepSpinModel(resolve_wall(model.config, shortest_distances(items, 2), margin=0.05, width=0.5))
    walled.load_state_dict(model.state_dict())
    inner, outer = (np.array(walled.config.short_range[k]) for k in ("r_inner", "r_outer"))
    assert np.all(inner < outer)
    for item in items:
        batch = {**item, "atom_frames": torch.zeros(len(item["positions"]), dtype=torch.int64)}
        a, b = evaluate(model, batch, create_graph=False), evaluate(walled, batch, create_graph=False)
        assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])
    # r_outer sits below every training distance of its pair, and the wall acts just inside it
    shortest = np.full((2, 2), np.inf)
    for f in frames:
        d = Atoms(f.symbols, f.positions, cell=f.cell, pbc=True).get_all_distances(mic=True)
        types = np.array([0 if s == "Ni" else 1 for s in f.symbols])
        for a in range(2):
            for b in range(2):
                block = d[np.ix_(types == a, types == b)]
                shortest[a, b] = min(shortest[a, b], block[block > 0].min())
    assert np.all(outer < shortest) and np.allclose(outer, shortest - 0.05)


def test_bad_wall_tables_are_refused():
    z = {"charges": [28, 8]}
    for bad, match in [({**z, "r_inner": [[1.0, 1.0], [1.0, 1.0]], "r_outer": [[0.9, 2.0], [2.0, 2.0]]},
                        "r_inner < r_outer"),
                       ({**z, "r_inner": [[1.0, 1.2], [1.0, 1.0]], "r_outer": [[2.0, 2.0], [2.0, 2.0]]}, "symmetric"),
                       ({**z, "r_inner": 1.0, "r_outer": 2.0}, "symmetric"),
                       ({"r_inner": [[1.0] * 2] * 2, "r_outer": [[2.0] * 2] * 2}, "charges"),
                       ({**z, "type": "lj", "r_inner": [[1.0] * 2] * 2, "r_outer": [[2.0] * 2] * 2}, "zbl"),
                       ({"sigma": 1.0}, "unknown short_range keys")]:
        with pytest.raises(ValueError, match=match):
            small_model(short_range=bad)
    with pytest.raises(ValueError, match="element names"):
        nuclear_charges(["Ni", "Ox"])


def test_an_oxygen_driven_into_a_nickel_meets_a_wall_with_the_shipped_model():
    atoms = nio_afm(repeat=(2, 2, 2))
    symbols = atoms.get_chemical_symbols()
    o = symbols.index("O")
    ni = min((k for k, s in enumerate(symbols) if s == "Ni"), key=lambda k: atoms.get_distance(o, k, mic=True))
    bond = atoms.get_distance(ni, o, mic=True, vector=True)
    unit = bond / np.linalg.norm(bond)
    start = atoms.positions[o].copy()
    calc = DeepSpinCalculator("nio")
    distances = np.linspace(np.linalg.norm(bond), 0.8, 40)
    energies = []
    for r in distances:
        atoms.positions[o] = start - (np.linalg.norm(bond) - r) * unit
        energies.append(calc.get_potential_energy(atoms))
    assert np.all(np.diff(energies) > 0), np.round(np.diff(energies), 4)
    assert energies[np.argmin(abs(distances - 1.0))] - energies[0] > 10.0  # tens of eV, not 1 eV
