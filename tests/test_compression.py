"""Tabulated embedding nets: accuracy against the nets, exactness outside the tables, files, calculator.

Finite differences, invariances and the other contracts of the compressed model run in
test_calculator.py (each of its tests runs on a plain and a compressed model).
"""

import numpy as np
import pytest
import torch

from ase_deepspin import DeepSpinCalculator, compress_model, load_model, save_model
from ase_deepspin.cli import main
from ase_deepspin.io.frames import read_deepmd_npy
from ase_deepspin.system import check_structure, model_inputs, read_spins
from ase_deepspin.model import fused
from ase_deepspin.model.tabulation import EmbeddingTable, net_derivatives
from conftest import NIO_DATA, needs_nio_data, small_model


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def results(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), calc.get_magnetic_torques(atoms)


def test_stored_derivatives_are_the_nets():
    net = small_model().descriptor.embedding[2]
    x = torch.linspace(-1.0, 6.0, 9, dtype=torch.float64, requires_grad=True)
    g = net(x[:, None])
    first = torch.stack([torch.autograd.grad(g[:, m].sum(), x, create_graph=True)[0] for m in range(g.shape[1])], 1)
    second = torch.stack([torch.autograd.grad(first[:, m].sum(), x, retain_graph=True)[0]
                          for m in range(g.shape[1])], 1)
    stored = net_derivatives(net, x.detach())
    for k, exact in enumerate([g, first, second]):
        assert torch.allclose(stored[:, k], exact.detach(), rtol=0, atol=1e-12)


def spline_on_interval(table, interval, tau_value):
    """G and its first two x-derivatives [n, M] from the polynomial pieces of the given intervals."""
    tau = torch.full(interval.shape, tau_value, dtype=torch.float64, requires_grad=True)
    rows = interval[:, None] + torch.arange(6)
    out = [torch.einsum("nl,nlm->nm", table.weights(interval, tau), table.coefficients[rows])]
    width = (table.knots[interval + 1] - table.knots[interval])[:, None]
    for _ in range(2):
        out.append(torch.stack([torch.autograd.grad(out[-1][:, m].sum(), tau, create_graph=True)[0]
                                for m in range(out[-1].shape[1])], 1) / width)
    return out


def test_tabulated_net_is_smooth_across_knots():
    # value, slope and curvature at each interior knot agree between the pieces left and right of it
    table = EmbeddingTable.from_net(small_model().descriptor.embedding[0], -1.0, 8.0)
    left = torch.arange(len(table.knots) - 2)
    for k, (below, above) in enumerate(zip(spline_on_interval(table, left, 1.0),
                                           spline_on_interval(table, left + 1, 0.0))):
        scale = float(above.detach().abs().max())
        assert float((below - above).detach().abs().max()) < 1e-9 * scale, k


def test_table_is_within_its_tolerance_everywhere():
    net = small_model().descriptor.embedding[1]
    table = EmbeddingTable.from_net(net, -1.0, 8.0, tolerance=1e-8)
    x = torch.tensor(np.random.default_rng(0).uniform(-1.0, 8.0, 20_000))
    with torch.no_grad():
        error = (table.evaluate(x) - net(x[:, None])).abs().max()
    assert error < 2e-8  # the tolerance is enforced at test points; between them it holds to ~2x
    assert bool(table.inside(torch.tensor([-1.0, 8.0])).all()) and not bool(table.inside(torch.tensor([8.01])).any())


def test_neighbours_outside_the_table_are_evaluated_by_the_net(nio):
    plain = small_model()
    tabulated = compress_model(plain)
    mostly_outside = compress_model(plain, min_distance=4.499)  # rcut 4.5: every edge goes to the nets
    e0, f0, w0 = results(DeepSpinCalculator(plain), nio)
    e1, f1, w1 = results(DeepSpinCalculator(tabulated), nio)
    e2, f2, w2 = results(DeepSpinCalculator(mostly_outside), nio)
    assert 0 < relative(f1, f0) < 1e-6  # tables: close to, not equal to, the nets
    assert abs(e2 - e0) < 1e-12 * abs(e0) and relative(f2, f0) < 1e-11 and relative(w2, w0) < 1e-11


@needs_nio_data
def test_compressed_shipped_model_matches_plain_on_real_frames():
    plain = DeepSpinCalculator("nio")
    compressed = DeepSpinCalculator("nio", compress=True)
    frames = read_deepmd_npy(NIO_DATA / "data_0")[:3] + read_deepmd_npy(NIO_DATA / "data_1")[:3]
    for frame in frames:
        atoms = frame.to_atoms()
        e0, f0, w0 = results(plain, atoms)
        e1, f1, w1 = results(compressed, atoms)
        assert abs(e1 - e0) < 1e-7 * abs(e0)
        assert relative(f1, f0) < 1e-6 and relative(w1, w0) < 1e-6


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compressed_file_equals_compressing_on_load(nio, tmp_path, dtype):
    plain_path, compressed_path = tmp_path / "plain.pt", tmp_path / "compressed.pt"
    save_model(small_model(), plain_path)
    assert main(["compress", str(plain_path), str(compressed_path)]) == 0
    from_file = results(DeepSpinCalculator(compressed_path, dtype=dtype), nio)
    on_load = results(DeepSpinCalculator(plain_path, dtype=dtype, compress=True), nio)
    assert from_file[0] == on_load[0]
    assert np.array_equal(from_file[1], on_load[1]) and np.array_equal(from_file[2], on_load[2])


def test_compressed_file_round_trips(nio, tmp_path, capsys):
    model = compress_model(small_model(), tolerance=1e-7, min_distance=0.8)
    save_model(model, tmp_path / "c.pt")
    loaded = load_model(tmp_path / "c.pt")
    assert loaded.config.compression == model.config.compression
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    a, b = results(DeepSpinCalculator(model), nio), results(DeepSpinCalculator(loaded), nio)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert main(["info", str(tmp_path / "c.pt")]) == 0
    out = capsys.readouterr().out
    assert "tolerance 1e-07" in out and "Ni <- Ni_spin" in out and "knots" in out


@pytest.mark.parametrize("options, message", [
    ({"min_distance": 0.0}, "min_distance"),
    ({"min_distance": 4.5}, "min_distance"),
    ({"tolerance": 0.0}, "tolerance"),
])
def test_bad_compression_options(options, message):
    with pytest.raises(ValueError, match=message):
        compress_model(small_model(), **options)


def test_unreachable_tolerance_is_refused():
    with pytest.raises(ValueError, match="more than 200 knots"):
        EmbeddingTable.from_net(small_model().descriptor.embedding[0], -1.0, 8.0, tolerance=1e-30, max_knots=200)


def test_derivatives_of_forces_through_the_tables_for_training(nio):
    # create_graph=True takes the plain-autograd table path: force errors can be differentiated again
    model = compress_model(small_model())
    cfg = model.config
    inputs = model_inputs(model, nio.positions, nio.cell.array, nio.pbc, check_structure(nio, cfg.type_map),
                          read_spins(nio, cfg.type_map, cfg.magnetic))
    fused = model(**inputs)
    twice = model(**inputs, create_graph=True)
    assert torch.allclose(fused["forces"], twice["forces"], rtol=0, atol=1e-12)
    assert torch.allclose(fused["torques"], twice["torques"], rtol=0, atol=1e-12)
    spins = inputs["spins"].clone().requires_grad_(True)
    torques = model(**{**inputs, "spins": spins}, forces=False, create_graph=True)["torques"]
    hessian_row = torch.autograd.grad(torques[0, 2], spins)[0]  # −∂²E/∂S_0z∂S, a symmetric Hessian's row
    step = 1e-5
    plus, minus = spins.detach().clone(), spins.detach().clone()
    plus[0, 2] += step
    minus[0, 2] -= step
    fd = (model(**{**inputs, "spins": plus}, forces=False)["torques"]
          - model(**{**inputs, "spins": minus}, forces=False)["torques"]) / (2 * step)
    assert torch.allclose(hessian_row, fd, rtol=0, atol=1e-6 * float(fd.abs().max()))


def model_and_inputs(atoms, **compress_options):
    model = compress_model(small_model(), **compress_options)
    cfg = model.config
    return model, model_inputs(model, atoms.positions, atoms.cell.array, atoms.pbc,
                               check_structure(atoms, cfg.type_map), read_spins(atoms, cfg.type_map, cfg.magnetic))


@pytest.mark.parametrize("min_distance", [0.5, 2.2])  # 2.2 Å: the nearest Ni–O edges fall outside the tables
def test_fused_kernels_equal_the_torch_path(nio, monkeypatch, min_distance):
    model, inputs = model_and_inputs(nio, min_distance=min_distance)
    calls = []
    apply = fused.FusedContraction.apply
    monkeypatch.setattr(fused.FusedContraction, "apply", lambda *args: calls.append(1) or apply(*args))
    kernels = model(**inputs, virial=True)
    # every (centre type, block) with edges: Ni and O centres, blocks Ni, O and Ni_spin (twice: S and -S)
    assert model.config.time_reversal and len(calls) == 8
    with fused.disabled():
        plain_torch = model(**inputs, virial=True)
    assert len(calls) == 8
    assert abs(float(kernels["energy"] - plain_torch["energy"])) < 1e-12 * abs(float(plain_torch["energy"]))
    for key in ("forces", "torques", "virial"):
        assert torch.allclose(kernels[key], plain_torch[key], rtol=0, atol=1e-12 * float(plain_torch[key].abs().max()))


def test_edge_order_does_not_matter(nio):
    # edges not sorted by centre cannot use the fused kernels' per-centre loops: the torch path runs
    model, inputs = model_and_inputs(nio, min_distance=2.2)
    order = torch.randperm(len(inputs["centers"]), generator=torch.Generator().manual_seed(0))
    shuffled = {**inputs, **{k: inputs[k][order] for k in ("centers", "neighbors", "offsets", "pseudo")}}
    a, b = model(**inputs, virial=True), model(**shuffled, virial=True)
    assert abs(float(a["energy"] - b["energy"])) < 1e-12 * abs(float(a["energy"]))
    for key in ("forces", "torques", "virial"):
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-12 * float(a[key].abs().max()))
