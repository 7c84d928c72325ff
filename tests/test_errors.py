"""Bad input gives a clear, early error naming the problem."""

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import small_model

from ase_deepspin import DeepSpinCalculator, ModelConfig, ModelFileError, save_model
from ase_deepspin.build import nio_afm


@pytest.fixture
def calc(model):
    return DeepSpinCalculator(model)


def test_unknown_element(calc):
    atoms = nio_afm()
    atoms[1].symbol = "Fe"
    with pytest.raises(ValueError, match=r"\['Fe'\].*type_map"):
        calc.get_potential_energy(atoms)


def test_missing_spins(calc):
    atoms = nio_afm()
    del atoms.arrays["initial_magmoms"]
    with pytest.raises(ValueError, match="no spins"):
        calc.get_potential_energy(atoms)


def test_collinear_spins(calc):
    atoms = nio_afm()
    del atoms.arrays["initial_magmoms"]
    atoms.set_initial_magnetic_moments([1.2, 0, -1.2, 0])
    with pytest.raises(ValueError, match=r"\(N, 3\).*collinear"):
        calc.get_potential_energy(atoms)


def test_zero_spin_on_magnetic_atom(calc):
    atoms = nio_afm()
    spins = atoms.get_initial_magnetic_moments()
    spins[2] = 0.0
    atoms.set_initial_magnetic_moments(spins)
    with pytest.raises(ValueError, match=r"zero spin at indices \[2\]"):
        calc.get_potential_energy(atoms)


@pytest.mark.parametrize("what", ["positions", "spins", "cell"])
def test_nan_inputs(calc, what):
    atoms = nio_afm()
    if what == "positions":
        atoms.positions[0, 0] = np.nan
    elif what == "spins":
        spins = atoms.get_initial_magnetic_moments()
        spins[0, 1] = np.inf
        atoms.set_initial_magnetic_moments(spins)
    else:
        atoms.cell[0, 0] = np.nan
    with pytest.raises(ValueError, match=f"{what} contain.*NaN"):
        calc.get_potential_energy(atoms)


def test_singular_periodic_cell(calc):
    atoms = nio_afm()
    atoms.set_cell([[3, 0, 0], [0, 3, 0], [3, 3, 0]], scale_atoms=False)
    with pytest.raises(ValueError, match="singular"):
        calc.get_potential_energy(atoms)


def test_overlapping_atoms(calc):
    atoms = nio_afm()
    atoms.positions[1] = atoms.positions[0]
    with pytest.raises(ValueError, match="overlaps"):
        calc.get_potential_energy(atoms)


def test_too_many_neighbours_for_sel(model):
    crowded = Atoms("Ni" * 40, positions=np.random.default_rng(0).uniform(0, 3, (40, 3)))
    crowded.set_initial_magnetic_moments(np.tile([0, 0, 1.2], (40, 1)))
    with pytest.raises(ValueError, match="sel allows 30"):
        DeepSpinCalculator(model).get_potential_energy(crowded)


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"definitely not a torch file")
    with pytest.raises(ModelFileError, match="not a readable"):
        DeepSpinCalculator(str(path))


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ase-deepspin-model", "payload": ModelConfig(["Ni"], [0.3])}, path)
    with pytest.raises(ModelFileError, match="arbitrary code") as err:
        DeepSpinCalculator(str(path))
    assert "weights_only=False" not in str(err.value)  # never the advice to unpickle it


def test_corrupted_model_file_is_refused(model, tmp_path, nio):
    path = tmp_path / "m.pt"
    save_model(model, path)
    assert DeepSpinCalculator(str(path)).get_potential_energy(nio) == DeepSpinCalculator(model).get_potential_energy(nio)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the tensors' bytes, which torch reads without any check
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupted"):
        DeepSpinCalculator(str(path))


def test_training_checkpoint_points_to_freeze(model, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "optimizer": {}, "step": 3, "lcurve": "[]", "config": "{}"}, path)
    with pytest.raises(ModelFileError, match="ase-deepspin freeze"):
        DeepSpinCalculator(str(path))


def test_wrong_version(model, tmp_path):
    path = tmp_path / "m.pt"
    save_model(model, path)
    blob = torch.load(path, weights_only=True)
    blob["version"] = 99
    torch.save(blob, path)
    with pytest.raises(ModelFileError, match="version 99"):
        DeepSpinCalculator(str(path))


def test_missing_model_file():
    with pytest.raises(FileNotFoundError, match="no model file 'nothere.pt'"):
        DeepSpinCalculator("nothere.pt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_missing_cuda_device(model):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        DeepSpinCalculator(model, device="cuda")


@pytest.mark.parametrize("bad", [dict(rcut_smth=6.0), dict(virtual_scale=[0.3]), dict(sel=[1, 2, 3]),
                                 dict(axis_neuron=500), dict(type_map=["Ni", "Ni"])])
def test_invalid_hyper_parameters(bad):
    params = dict(type_map=["Ni", "O"], virtual_scale=[0.3, 0.0], rcut=5.0, rcut_smth=4.0)
    params.update(bad)
    with pytest.raises(ValueError):
        ModelConfig(**params)


def test_structures_outside_the_training_data_warn_once_per_kind(recwarn):
    from ase_deepspin import ExtrapolationWarning

    ranges = {"moment": [[1.26, 1.29], None], "shortest": [[2.9, 2.05], [2.05, 2.9]]}
    model = small_model(data_ranges=ranges)
    calc = DeepSpinCalculator(model)
    atoms = nio_afm(repeat=(2, 2, 1))
    calc.get_potential_energy(atoms)
    assert not [w for w in recwarn if w.category is ExtrapolationWarning] and calc.outside_data == {}  # inside
    small = atoms.copy()
    spins = atoms.get_initial_magnetic_moments()
    small.set_initial_magnetic_moments(np.where(np.arange(len(atoms))[:, None] < 3, 1e-3, 1.0) * spins)
    with pytest.warns(ExtrapolationWarning, match=r"2 of 8 Ni moments are outside .* span 0.00127") as told:
        calc.get_potential_energy(small)
    assert told[0].filename == __file__  # the user's line, not the calculator's
    squeezed = atoms.copy()
    o = squeezed.get_chemical_symbols().index("O")
    bond = squeezed.get_distance(o, 0, mic=True, vector=True)  # atom 0 is a Ni
    squeezed.positions[o] += 0.5 * bond / np.linalg.norm(bond)
    with pytest.warns(ExtrapolationWarning, match="Ni–O pair is"):
        calc.get_potential_energy(squeezed)
    recwarn.clear()
    calc.get_potential_energy(small)  # told once per calculator, but always recorded for the latest call
    assert not [w for w in recwarn if w.category is ExtrapolationWarning]
    assert list(calc.outside_data) == ["moment:Ni"] and "2 of 8" in calc.outside_data["moment:Ni"]
    calc.get_potential_energy(atoms)
    assert calc.outside_data == {}


def test_first_shell_spin_alignment_of_closed_form_orders():
    """<ŝ_i·ŝ_j> over the 12 FCC nearest neighbours: +1 ferromagnetic, +1/3 double-layer and −1/3 single-layer
    antiferromagnetic; unchanged by rotating all spins and by reversing them."""
    from scipy.spatial.transform import Rotation

    from ase_deepspin.build import fcc_fe_afmd
    from ase_deepspin.model.ranges import spin_alignment
    from ase_deepspin.system import atoms_graph

    model = small_model()
    atoms = fcc_fe_afmd(repeat=(2, 2, 2))
    atoms.symbols[:] = "Ni"  # the small model's magnetic type
    plane = np.rint(2.0 * atoms.positions[:, 2] / 3.5495).astype(int)
    orders = {1.0: np.ones(len(atoms)), 1 / 3: np.where((plane // 2) % 2 == 0, 1.0, -1.0),
              -1 / 3: np.where(plane % 2 == 0, 1.0, -1.0)}
    rotation = Rotation.from_rotvec([0.4, 1.2, -0.3]).as_matrix()
    for expected, signs in orders.items():
        for spins in (np.outer(signs, [0, 0, 1.3]), -np.outer(signs, [0, 0, 1.3]) @ rotation.T):
            atoms.set_initial_magnetic_moments(spins)
            g = atoms_graph(model, atoms)
            values = spin_alignment(g.positions, g.spins, g.atom_types, g.centers, g.neighbors, g.offsets, g.pseudo,
                                    [3.0, 3.0])
            assert np.allclose(values.numpy(), expected, atol=1e-12), (expected, values)


def test_a_spin_order_the_data_never_held_warns():
    """Ranges recorded on double-layer AFM frames: the same order rattled is silent, single-layer AFM order
    (alignment −1/3, every atom and the mean outside) and random directions (the mean outside) warn."""
    from ase_deepspin import ExtrapolationWarning
    from ase_deepspin.build import fcc_fe_afmd
    from ase_deepspin.io.frames import Frame
    from ase_deepspin.model.ranges import data_ranges, shortest_distances
    from ase_deepspin.training.train import PreparedFrames

    def fcc(spins_of, seed):
        atoms = fcc_fe_afmd(repeat=(2, 2, 2))
        atoms.symbols[:] = "Ni"
        atoms.rattle(0.02, seed=seed)
        atoms.set_initial_magnetic_moments(spins_of(atoms))
        return atoms

    rng = np.random.default_rng(0)

    def canted(atoms):  # AFMD, each spin tilted by about 0.1 rad
        spins = atoms.get_initial_magnetic_moments() + rng.normal(scale=0.13, size=(len(atoms), 3))
        return 1.3 * spins / np.linalg.norm(spins, axis=1, keepdims=True)

    frames = [Frame(symbols=np.array(a.get_chemical_symbols()), positions=a.positions, cell=a.cell.array,
                    pbc=a.pbc, spins=a.get_initial_magnetic_moments(), energy=0.0, forces=np.zeros((32, 3)),
                    torques=np.zeros((32, 3))) for a in (fcc(canted, k) for k in range(4))]
    model = small_model(sel=[64, 64])  # FCC at 3.55 Å: 42 neighbours within the small model's rcut
    items = PreparedFrames(frames, model).items
    ranges = data_ranges(items, model.config.magnetic, shortest_distances(items, 2))
    alignment = ranges["alignment"][0]
    assert ranges["alignment"][1] is None and 2.5 < alignment["radius"] < 3.1
    assert 0.2 < alignment["frames"][0] <= alignment["frames"][1] <= 1 / 3
    calc = DeepSpinCalculator(small_model(sel=[64, 64], data_ranges=ranges))
    calc.get_potential_energy(fcc(canted, 9))
    assert "alignment:Ni" not in calc.outside_data
    plane = lambda a: np.rint(2.0 * fcc_fe_afmd(repeat=(2, 2, 2)).positions[:, 2] / 3.5495).astype(int)  # noqa: E731
    single_layer = fcc(lambda a: np.outer(np.where(plane(a) % 2 == 0, 1.0, -1.0), [0, 0, 1.3]), 10)
    with pytest.warns(ExtrapolationWarning, match=r"averages -0.33 .* 32 of 32 atoms lie outside"):
        calc.get_potential_energy(single_layer)
    directions = rng.normal(size=(32, 3))
    calc.get_potential_energy(fcc(lambda a: 1.3 * directions / np.linalg.norm(directions, axis=1, keepdims=True), 11))
    assert "spin order the model never saw" in calc.outside_data["alignment:Ni"]


@pytest.mark.parametrize("length", [1e3, 1e6])
def test_a_huge_moment_is_refused_before_any_neighbour_search(model, length, monkeypatch):
    from ase_deepspin.neighbors import NeighborSearch

    monkeypatch.setattr(NeighborSearch, "__call__", lambda *a, **k: pytest.fail("searched for neighbours"))
    atoms = nio_afm()
    spins = atoms.get_initial_magnetic_moments()
    spins[2] = [0.0, 0.0, length]
    atoms.set_initial_magnetic_moments(spins)
    calc = DeepSpinCalculator(model)
    with pytest.raises(ValueError, match=r"atom 2 \(Ni\) has a moment of length .* μB, beyond"):
        calc.get_potential_energy(atoms)


def test_a_cell_packed_beyond_reason_is_refused_early(calc):
    atoms = nio_afm(repeat=(2, 2, 2))
    atoms.set_cell(atoms.cell.array * 0.01, scale_atoms=True)  # a cell given in nm as if in Å, say
    with pytest.raises(ValueError, match=r"neighbours per atom .* \(is the cell in Å\?\)"):
        calc.get_potential_energy(atoms)


def test_a_text_file_given_as_a_model_is_named(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello world\n")
    with pytest.raises(ModelFileError, match="not a readable ase-deepspin model file"):
        DeepSpinCalculator(path)


@pytest.mark.parametrize("chunk", [0, -3, 2.5])
def test_a_chunk_size_that_is_not_a_positive_integer_is_refused(model, chunk):
    with pytest.raises(ValueError, match="max_edges_per_chunk"):
        DeepSpinCalculator(model, max_edges_per_chunk=chunk)


def test_freeze_given_a_model_file_says_so(model, tmp_path):
    from ase_deepspin.training.train import freeze

    save_model(model, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="is a model file, which needs no freezing"):
        freeze(tmp_path / "model.pt", tmp_path / "out.pt")
    with pytest.raises(ValueError, match="checkpoint not found"):
        freeze(tmp_path / "missing.pt", tmp_path / "out.pt")


def test_builders_work_with_their_own_defaults():
    from ase_deepspin.build import fcc_fe_afmd, nio_afm, simple_cubic_spins

    for atoms in (fcc_fe_afmd(), nio_afm(), simple_cubic_spins(2)):
        assert len(atoms) > 0 and np.isfinite(atoms.get_initial_magnetic_moments()).all()
