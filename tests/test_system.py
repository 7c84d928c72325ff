"""The one road from atoms to model inputs (``ase_deepspin.system``) and the calculator built on it."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_model, with_random_baseline

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.io.frames import Frame
from ase_deepspin.calculators.hamiltonian import ShellExchange, SpinHamiltonian
from ase_deepspin.system import Graph, build_graph, model_inputs, read_spins


def _forces(model, atoms, dtype):
    atoms = atoms.copy()
    atoms.calc = DeepSpinCalculator(model, dtype=dtype)
    return atoms.get_forces(), atoms.calc.get_magnetic_torques(atoms)


@pytest.mark.parametrize("shift", [1e3, 1e4])
def test_float32_accuracy_does_not_depend_on_where_the_atoms_are(nio, shift):
    """Edge vectors are differences of float64 positions, cast afterwards: translating the
    structure far from the origin keeps float32 forces as accurate as at the origin."""
    model = small_model()
    reference, _ = _forces(model, nio, "float64")
    near, _ = _forces(model, nio, "float32")
    moved = nio.copy()
    moved.positions += shift * np.array([1.0, -0.7, 0.4])
    far, _ = _forces(model, moved, "float32")
    scale = np.abs(reference).max()
    error_near = np.abs(near - reference).max() / scale
    error_far = np.abs(far - reference).max() / scale
    assert error_near < 1e-5
    # float32 positions at 10^4 Å carry ~1e-3 Å of rounding: forces would be wrong at the 1e-3 level
    assert error_far < 3 * error_near + 1e-6


def test_a_moment_on_a_non_magnetic_element_is_an_error(nio):
    """Magnetic means one thing: by element. A stray O moment is refused, not silently ignored
    (it would get no torque from the model yet precess under LLG and count in the magnetisation)."""
    spins = nio.get_initial_magnetic_moments()
    o = np.flatnonzero(np.array(nio.get_chemical_symbols()) == "O")[0]
    spins[o] = [0.0, 0.0, 0.5]
    nio.set_initial_magnetic_moments(spins)
    nio.calc = DeepSpinCalculator(small_model())
    with pytest.raises(ValueError, match=rf"non-magnetic atoms \(O\) carry spins at indices \[{o}\]"):
        nio.get_potential_energy()
    from ase_deepspin.dynamics import SpinLatticeDynamics

    with pytest.raises(ValueError, match="non-magnetic"):
        SpinLatticeDynamics(nio, dt_fs=0.1)
    nio.calc = SpinHamiltonian(exchange={("Ni", "Ni"): ShellExchange(J=(0.01,), radii=(2.95,))})
    with pytest.raises(ValueError, match="non-magnetic"):
        nio.get_potential_energy()


def test_read_spins_by_type_and_by_moment(nio):
    spins = nio.get_initial_magnetic_moments()
    np.testing.assert_array_equal(read_spins(nio, ["Ni", "O"], [True, False]), spins)
    np.testing.assert_array_equal(read_spins(nio), spins)  # no type information: any moment is allowed
    ni = np.flatnonzero(np.array(nio.get_chemical_symbols()) == "Ni")[2]
    spins[ni] = 0.0
    nio.set_initial_magnetic_moments(spins)
    with pytest.raises(ValueError, match=rf"zero spin at indices \[{ni}\]"):
        read_spins(nio, ["Ni", "O"], [True, False])
    with pytest.raises(ValueError, match="zero spin"):
        read_spins(nio, magnetic={"Ni"})
    del nio.arrays["initial_magmoms"]
    nio.set_initial_magnetic_moments(np.ones(len(nio)))
    with pytest.raises(ValueError, match="collinear"):
        read_spins(nio, ["Ni", "O"], [True, False])


def test_training_checks_the_spins_of_its_frames(nio):
    """A zero moment on a magnetic atom (it would make the spin baseline NaN) or a moment on a
    non-magnetic one is reported with the frame it came from."""
    from ase_deepspin.training.train import PreparedFrames

    model = with_random_baseline(small_model(spin_baseline={"n_basis": 4, "onsite_order": 2}))
    symbols = np.array(nio.get_chemical_symbols())
    spins = nio.get_initial_magnetic_moments()
    labels = dict(energy=-1.0, forces=np.zeros((len(nio), 3)), torques=np.zeros((len(nio), 3)))

    def frame(s, name):
        return Frame(symbols, nio.positions, nio.cell.array, nio.pbc, s, source=name, **labels)

    PreparedFrames([frame(spins, "good")], model)
    zero = spins.copy()
    zero[np.flatnonzero(symbols == "Ni")[0]] = 0.0
    with pytest.raises(ValueError, match="bad#3: magnetic atoms with zero spin"):
        PreparedFrames([frame(zero, "bad#3")], model)
    stray = spins.copy()
    stray[np.flatnonzero(symbols == "O")[0]] = 0.1
    with pytest.raises(ValueError, match=r"bad#4: non-magnetic atoms \(O\)"):
        PreparedFrames([frame(stray, "bad#4")], model)


def test_graph_keeps_lattice_quantities_in_float64(nio):
    cfg = small_model().config
    graph = build_graph(nio.positions, nio.cell.array, nio.pbc, np.array([0 if s == "Ni" else 1 for s in
                                                                          nio.get_chemical_symbols()]),
                        nio.get_initial_magnetic_moments(), cfg.virtual_scale, cfg.rcut, dtype=torch.float32)
    assert isinstance(graph, Graph) and graph.n_edges > 0
    assert graph.positions.dtype == graph.offsets.dtype == torch.float64 and graph.spins.dtype == torch.float32
    moved = graph.to("cpu", torch.float64)
    assert moved.spins.dtype == torch.float64 and moved.positions.dtype == torch.float64
    assert set(graph.inputs()) == {"positions", "spins", "atom_types", "centers", "neighbors", "offsets", "pseudo"}


def test_chunked_evaluation_refuses_unsorted_edges(nio):
    model = small_model()
    types = np.array([0 if s == "Ni" else 1 for s in nio.get_chemical_symbols()])
    inputs = model_inputs(model, nio.positions, nio.cell.array, nio.pbc, types, nio.get_initial_magnetic_moments())
    whole = model(**inputs)
    chunked = model(**inputs, max_edges_per_chunk=100)
    np.testing.assert_allclose(chunked["forces"].numpy(), whole["forces"].numpy(), atol=1e-12)
    order = torch.randperm(len(inputs["centers"]), generator=torch.Generator().manual_seed(0))
    shuffled = inputs | {k: inputs[k][order] for k in ("centers", "neighbors", "offsets", "pseudo")}
    with pytest.raises(ValueError, match="sorted by centre"):
        model(**shuffled, max_edges_per_chunk=100)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_chunked_evaluation_on_cuda(nio):
    """Chunk bounds are built on the edges' device (above the default chunk size on GPUs)."""
    model = small_model()
    cpu = DeepSpinCalculator(model, max_edges_per_chunk=100)
    gpu = DeepSpinCalculator(model, device="cuda", max_edges_per_chunk=100)
    np.testing.assert_allclose(gpu.get_forces(nio), cpu.get_forces(nio), atol=1e-10)


def test_calculator_leaves_the_callers_model_alone_and_records_its_parameters(nio, tmp_path):
    import ase.io

    model = small_model()
    calc = DeepSpinCalculator(model, dtype="float32")
    assert model.dtype == torch.float64 and calc.model is not model
    assert DeepSpinCalculator(model).model is model  # nothing to convert: no copy
    params = calc.todict()
    assert params["dtype"] == "float32" and params["compressed"] is False and params["model"].startswith("<")
    nio.calc = DeepSpinCalculator("nio", compress=True)
    nio.get_forces()
    ase.io.write(tmp_path / "one.traj", nio)
    stored = ase.io.read(tmp_path / "one.traj").calc.parameters
    assert stored["compressed"] is True and Path(stored["model"]).name == "nio.pt"
    with pytest.raises(TypeError, match="precision"):
        DeepSpinCalculator(model, precision="float32")


def test_declared_vesin_supports_per_axis_periodicity():
    """The neighbour search passes one periodic flag per axis, which vesin accepts from 0.4 on."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    minimum = re.search(r'"vesin>=([0-9.]+)"', pyproject).group(1)
    assert tuple(int(v) for v in minimum.split(".")[:2]) >= (0, 4)
