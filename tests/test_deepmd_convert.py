"""DeePMD-kit spin se_e2_a models in and out (ase_deepspin.io.deepmd).

Everywhere: round trips, the layout of the written .dp file, and the energy of an independent NumPy
evaluation of the serialized DeePMD-kit model (doubled atoms, per-slot neighbour lists with the
exclusions turned into empty slots, DeePMD-kit's network index and layer rules) against the native
model. Where DeePMD-kit is installed (ASE_DEEPSPIN_DEEPMD_PYTHON, or the reference-codes venv), a model
trained by DeePMD-kit and a model exported from here are compared with DeePMD-kit's own DeepPot.
"""

import copy
import json
import os
import subprocess
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.neighborlist import neighbor_list
from conftest import NIO_DATA, needs_nio_data, small_model as symmetric_model

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.cli import main as cli_main
from ase_deepspin.io import load_model
from ase_deepspin.io.deepmd import (
    DeepMDFormatError,
    dp_dict_from_model,
    load_dp_file,
    model_from_dp_dict,
    read_deepmd,
    write_deepmd,
)


def small_model(**overrides):
    """conftest's small model without time reversal, which DeePMD-kit cannot express."""
    return symmetric_model(**{"time_reversal": False, **overrides})


def randomized(model, seed=0):
    """Non-trivial biases and statistics, so that a dropped term would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.energy_bias.copy_(torch.randn(model.energy_bias.shape, generator=g, dtype=model.dtype) - 5.0)
        model.descriptor.env_mean[:, 0] += 0.05 * torch.rand(model.descriptor.env_mean.shape[0], generator=g, dtype=model.dtype)
    return model


def nio_frames(n=2):
    """(Atoms, ...) of the first n frames of the DeltaSpin NiO data (32 atoms, spins in μB)."""
    system = NIO_DATA / "data_1"
    types = np.loadtxt(system / "type.raw", dtype=int)
    coords, boxes, spins = (np.load(system / "set.000" / f"{k}.npy")[:n] for k in ("coord", "box", "spin"))
    frames = []
    for c, b, s in zip(coords, boxes, spins):
        atoms = Atoms(symbols=np.array(["Ni", "O"])[types], positions=c.reshape(-1, 3), cell=b.reshape(3, 3),
                      pbc=True)
        atoms.set_initial_magnetic_moments(s.reshape(-1, 3))
        frames.append(atoms)
    return frames


def stress_virial(model, atoms):
    """−stress · volume (eV) of the calculator: the symmetric virial at fixed spins."""
    atoms = atoms.copy()
    atoms.calc = DeepSpinCalculator(model)
    return -atoms.get_stress(voigt=False) * atoms.get_volume()


def evaluate(model, atoms):
    atoms = atoms.copy()
    atoms.calc = DeepSpinCalculator(model)
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.calc.get_magnetic_torques(atoms)


# ------------------------------------------------------------------ an independent reading of the .dp semantics
def _network(net, x):
    for layer in net["layers"]:
        v = layer["@variables"]
        y = x @ v["w"] + v["b"]
        if layer["activation_function"] == "tanh":
            y = np.tanh(y)
        if v.get("idt") is not None:
            y = y * v["idt"]
        if layer["resnet"] and v["w"].shape[1] == v["w"].shape[0]:
            y = y + x
        elif layer["resnet"] and v["w"].shape[1] == 2 * v["w"].shape[0]:
            y = y + np.concatenate([x, x], axis=-1)
        x = y
    return x


def deepmd_energy(data, atoms):
    """Energy (eV) of a serialized DeePMD-kit spin se_e2_a model, evaluated the way DeePMD-kit does it:
    virtual atoms as extra atoms, sel slots per neighbour type sorted by distance, excluded pairs and empty
    slots as nlist = −1, per-slot davg/dstd of the centre type, nets at index ti + tb * ntypes."""
    model = data["model"]
    bb, spin = model["backbone_model"], model["spin"]
    desc, fit = bb["descriptor"], bb["fitting"]
    type_map = bb["type_map"]
    n_real = len(spin["use_spin"])
    n2 = 2 * n_real
    types = np.array([type_map.index(s) for s in atoms.get_chemical_symbols()])
    eta = np.array([v if u else 0.0 for u, v in zip(spin["use_spin"], spin["virtual_scale"])])[types]
    moments = atoms.get_initial_magnetic_moments()
    doubled = Atoms(positions=np.vstack([atoms.positions, atoms.positions + eta[:, None] * moments]),
                    cell=atoms.cell, pbc=atoms.pbc)
    all_types = np.concatenate([types, types + n_real])
    excluded = {tuple(p) for p in bb["pair_exclude_types"]} | {tuple(p[::-1]) for p in bb["pair_exclude_types"]}
    rcut, rcut_smth, protection = desc["rcut"], desc["rcut_smth"], desc["env_protection"]
    sel = desc["sel"]
    offsets = np.concatenate([[0], np.cumsum(sel)])
    davg, dstd = desc["@variables"]["davg"], desc["@variables"]["dstd"]
    i_all, j_all, d_all = neighbor_list("ijD", doubled, rcut)
    energy = 0.0
    for i in range(len(atoms)):
        ti = types[i]
        raw = np.zeros((offsets[-1], 4))
        for tb in range(n2):
            pick = (i_all == i) & (all_types[j_all] == tb)
            if (ti, tb) in excluded or not pick.any():
                continue
            vec = d_all[pick]
            r = np.linalg.norm(vec, axis=1)
            order = np.argsort(r, kind="stable")[: sel[tb]]
            vec, r = vec[order], r[order]
            u = np.clip((r - rcut_smth) / (rcut - rcut_smth), 0, 1)
            s = u**3 * (-6 * u**2 + 15 * u - 10) + 1
            rows = np.column_stack([s / (r + protection), s[:, None] * vec / (r + protection)[:, None] ** 2])
            raw[offsets[tb] : offsets[tb] + len(r)] = rows
        rows = (raw - davg[ti]) / dstd[ti]
        t = np.zeros((4, desc["neuron"][-1]))
        for tb in range(n2):
            block = rows[offsets[tb] : offsets[tb + 1]]
            g = _network(desc["embeddings"]["networks"][ti + tb * n2], block[:, :1])
            t += block.T @ g
        t /= offsets[-1]
        descriptor = (t.T @ t[:, : desc["axis_neuron"]]).reshape(-1)
        e = _network(fit["nets"]["networks"][ti], descriptor)[0]
        energy += e + fit["@variables"]["bias_atom_e"][ti, 0] + bb["@variables"]["out_bias"][0, ti, 0]
    return energy


# ------------------------------------------------------------------ tests that run everywhere
@pytest.mark.parametrize("overrides", [{}, {"embedding_resnet_dt": True, "resnet_dt": False, "sel": [12, 14, 9, 3]}])
def test_round_trip_is_identical(tmp_path, overrides):
    model = randomized(small_model(**overrides))
    write_deepmd(model, tmp_path / "m.dp")
    back = read_deepmd(tmp_path / "m.dp")
    assert back.config == model.config
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_written_file_layout(tmp_path):
    model = randomized(small_model())
    write_deepmd(model, tmp_path / "m.dp")
    with h5py.File(tmp_path / "m.dp") as f:
        meta = json.loads(f.attrs["json"])
        stored = {name: f[name][()] for name in f}
    bb = meta["model"]["backbone_model"]
    desc, fit = bb["descriptor"], bb["fitting"]
    assert meta["model"]["type"] == "spin_ener" and desc["type"] == "se_e2_a"
    assert bb["type_map"] == ["Ni", "O", "Ni_spin", "O_spin"]
    assert meta["model"]["spin"] == {"use_spin": [True, False], "virtual_scale": [0.314, 0.0]}
    assert desc["sel"] == [30, 30, 30, 30]
    # the placeholder O_spin is excluded with every type; virtual atoms have no energy
    assert sorted(map(tuple, bb["pair_exclude_types"])) == [(3, 0), (3, 1), (3, 2), (3, 3)]
    assert bb["atom_exclude_types"] == [2, 3] and fit["exclude_types"] == [2, 3]
    nets = desc["embeddings"]["networks"]
    assert len(nets) == 16 and desc["embeddings"]["ndim"] == 2
    # DeePMD-kit's flat index is ti + tb * 4; the native one ti * 4 + tb
    w = stored[nets[0 + 3 * 4]["layers"][1]["@variables"]["w"].lstrip("/")]
    np.testing.assert_array_equal(w, model.descriptor.embedding[0 * 4 + 3][1].weight.detach().numpy())
    davg = stored[desc["@variables"]["davg"].lstrip("/")]
    assert davg.shape == (4, 120, 4) and np.all(davg[:2] == model.descriptor.env_mean.numpy()[:, None, :])
    out_bias = stored[bb["@variables"]["out_bias"].lstrip("/")]
    np.testing.assert_array_equal(out_bias[0, :2, 0], model.energy_bias.numpy())
    assert not np.any(stored[fit["@variables"]["bias_atom_e"].lstrip("/")])


def test_serialized_model_evaluated_as_deepmd_does_matches(nio):
    model = randomized(small_model())
    reference = deepmd_energy(dp_dict_from_model(model), nio)
    energy, _, _ = evaluate(model, nio)
    assert abs(energy - reference) <= 1e-12 * abs(reference)


def deepspin_network():
    """A DeepSPIN network of the shipped NiO model's sizes (25-50-100 embedding, 240×3 fitting, sel 60, rcut
    5.6 Å, DeePMD-kit's NiO spin example) with seeded weights, as DeePMD-kit holds it: pseudo-atoms, no spin
    baseline, wall or symmetrisation (the shipped model is of spin invariants, which DeePMD-kit has no form for)."""
    return symmetric_model(time_reversal=False, rcut=5.6, rcut_smth=5.4, sel=[60, 60], neuron=[25, 50, 100],
                           axis_neuron=16, fitting_neuron=[240, 240, 240], virtual_scale=[1.0, 0.0])


@needs_nio_data
def test_serialized_deepspin_model_on_nio_frame():
    model = deepspin_network()
    atoms = nio_frames(1)[0]
    reference = deepmd_energy(dp_dict_from_model(model), atoms)
    assert abs(evaluate(model, atoms)[0] - reference) <= 1e-12 * abs(reference)


def test_bias_split_and_type_one_side_are_read(nio):
    """DeePMD-kit's two bias terms add up; a type_one_side collection is shared by all centre types."""
    data = dp_dict_from_model(randomized(small_model()))
    bb = data["model"]["backbone_model"]
    bb["fitting"]["@variables"]["bias_atom_e"][:2, 0] = [0.25, -0.5]
    bb["@variables"]["out_bias"][0, :2, 0] -= [0.25, -0.5]
    nets = bb["descriptor"]["embeddings"]["networks"]
    for tb in range(4):
        for ti in range(4):
            nets[ti + tb * 4] = nets[tb * 4]  # every centre type uses the nets of Ni
    reference = deepmd_energy(data, nio)
    one_side = copy.deepcopy(data)
    desc = one_side["model"]["backbone_model"]["descriptor"]
    desc["type_one_side"] = True
    desc["embeddings"].update(ndim=1, networks=[nets[tb * 4] for tb in range(4)])
    assert abs(evaluate(model_from_dp_dict(one_side), nio)[0] - reference) <= 1e-12 * abs(reference)


def test_yaml_form_reads_like_dp(tmp_path):
    model = randomized(small_model())
    data = dp_dict_from_model(model)

    def inline(node, inside=False):
        if isinstance(node, dict):
            return {k: inline(v, inside or k == "@variables") for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v, inside) for v in node]
        if inside and isinstance(node, np.ndarray):
            return {"@class": "np.ndarray", "@is_variable": True, "@version": 1, "dtype": node.dtype.name,
                    "value": node.tolist()}
        return node

    (tmp_path / "m.yaml").write_text(yaml.dump(inline(data), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper)))
    back = read_deepmd(tmp_path / "m.yaml")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["model"].update(type="standard"), "not a DeePMD-kit spin energy model"),
    (lambda d: d["model"]["backbone_model"]["descriptor"].update(type="se_atten"), "only se_e2_a"),
    (lambda d: d["model"]["backbone_model"]["pair_exclude_types"].append([0, 1]), "beyond the spin placeholders"),
    (lambda d: d["model"]["backbone_model"]["descriptor"]["@variables"]["davg"].__setitem__((0, 5, 0), 9.0),
     "differs between neighbour slots"),
    (lambda d: d["model"]["backbone_model"]["fitting"].update(numb_fparam=2), "numb_fparam"),
])
def test_unrepresentable_models_are_rejected(edit, message):
    data = dp_dict_from_model(small_model())
    edit(data)
    with pytest.raises(DeepMDFormatError, match=message):
        model_from_dp_dict(data)


def test_calculator_and_info_read_deepmd_files(tmp_path, nio, capsys):
    model = randomized(small_model())
    write_deepmd(model, tmp_path / "m.dp")
    expected = DeepSpinCalculator(model).get_potential_energy(nio)
    assert DeepSpinCalculator(str(tmp_path / "m.dp")).get_potential_energy(nio) == pytest.approx(expected, abs=1e-10)
    assert cli_main(["info", str(tmp_path / "m.dp")]) == 0
    assert "spin symmetry   none" in capsys.readouterr().out


def write_pt2(data: dict, path):
    """A .pt2 archive as DeePMD-kit 3.2's pt_expt writes one, reduced to what a reader of the model needs: the
    serialised dictionary at model/extra/model.json, arrays as {"@class": "np.ndarray", "dtype", "value"}."""
    import zipfile

    def encode(node):
        if isinstance(node, np.ndarray):
            return {"@class": "np.ndarray", "@is_variable": True, "dtype": node.dtype.name, "value": node.tolist()}
        if isinstance(node, dict):
            return {k: encode(v) for k, v in node.items()}
        return [encode(v) for v in node] if isinstance(node, list) else node

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/extra/model.json", json.dumps(encode(data)))
        archive.writestr("model/data/aotinductor/model.wrapper.so", b"compiled program: never run")


def test_pt2_archive_reads_as_its_dp_dictionary(tmp_path, nio):
    model = randomized(small_model())
    write_pt2(dp_dict_from_model(model), tmp_path / "m.pt2")
    back = load_model(tmp_path / "m.pt2")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    assert evaluate(back, nio)[0] == evaluate(model, nio)[0]
    (tmp_path / "other.pt2").write_bytes(b"PK not a zip")
    with pytest.raises(DeepMDFormatError, match="not a readable DeePMD-kit .pt2"):
        read_deepmd(tmp_path / "other.pt2")


def test_tensorflow_graphs_are_named(tmp_path, capsys):
    (tmp_path / "frozen_model.pb").write_bytes(b"\n\x0f\n\x07t_coord")
    with pytest.raises(DeepMDFormatError, match="TensorFlow graph.*dp convert-backend frozen_model.pb model.dp"):
        load_model(tmp_path / "frozen_model.pb")
    assert cli_main(["convert", str(tmp_path / "frozen_model.pb"), str(tmp_path / "m.pt")]) == 2
    assert "TensorFlow graph" in capsys.readouterr().err


def test_not_a_dp_file(tmp_path):
    (tmp_path / "x.dp").write_text("not hdf5")
    with pytest.raises(DeepMDFormatError, match="not a readable HDF5"):
        load_dp_file(tmp_path / "x.dp")


def test_cli_convert_both_ways(tmp_path, nio, capsys):
    from ase_deepspin.io import save_model

    network = deepspin_network()
    save_model(network, tmp_path / "nio.pt")
    assert cli_main(["convert", str(tmp_path / "nio.pt"), str(tmp_path / "nio.dp")]) == 0
    assert cli_main(["convert", str(tmp_path / "nio.dp"), str(tmp_path / "back.pt")]) == 0
    e0, f0, w0 = evaluate(network, nio)
    e1, f1, w1 = evaluate(load_model(tmp_path / "back.pt"), nio)
    assert e0 == e1 and np.array_equal(f0, f1) and np.array_equal(w0, w1)
    assert cli_main(["convert", "nio", str(tmp_path / "x.pt")]) == 2  # ours to ours is not a conversion
    # the package's own TorchScript export converts back to the model it holds
    assert cli_main(["convert", str(tmp_path / "nio.pt"), str(tmp_path / "nio.pth")]) == 0
    assert cli_main(["convert", str(tmp_path / "nio.pth"), str(tmp_path / "again.pt")]) == 0
    e2, f2, w2 = evaluate(load_model(tmp_path / "again.pt"), nio)
    assert e0 == e2 and np.array_equal(f0, f2) and np.array_equal(w0, w2)
    save_model(small_model(spin_baseline={"n_basis": 4, "onsite_order": 2}), tmp_path / "base.pt")
    capsys.readouterr()
    assert cli_main(["convert", str(tmp_path / "base.pt"), str(tmp_path / "base.dp")]) == 2
    assert "spin baseline" in capsys.readouterr().err


# ------------------------------------------------------------------ against DeePMD-kit itself
def _deepmd_python():
    path = os.environ.get("ASE_DEEPSPIN_DEEPMD_PYTHON", "/tmp/reference-codes/deepmd/bin/python")
    return path if Path(path).is_file() else None


needs_deepmd = pytest.mark.skipif(_deepmd_python() is None,
                                  reason="DeePMD-kit not installed (set ASE_DEEPSPIN_DEEPMD_PYTHON)")

_DEEPMD_DRIVER = textwrap.dedent("""
    import json, sys, numpy as np
    from deepmd.main import main
    from deepmd.infer import DeepPot
    cmd = json.loads(sys.argv[1])
    if cmd.get("train"):
        main(["--pt", "train", "input.json", "--skip-neighbor-stat"])
        main(["--pt", "freeze", "-o", "trained.pth"])
        main(["convert-backend", "model.ckpt.pt", "trained.dp"])
    main(["convert-backend", "exported.dp", "exported.pth"])  # a frozen module with an empty model definition
    if cmd.get("train"):
        main(["convert-backend", "trained.dp", "converted.pth"])
    # DeePMD-kit's own reader of .pt2 archives, on the archive written here (its export of spin models fails
    # under torch 2.13: GuardOnDataDependentSymNode while tracing)
    from deepmd.dpmodel.utils.serialization import save_dp_model
    from deepmd.pt_expt.utils.serialization import serialize_from_file
    save_dp_model("from_pt2.dp", serialize_from_file("exported.pt2"))
    frames = np.load("frames.npz")
    for name in ("trained", "exported") if cmd.get("train") else ("exported",):
        e, f, v, fm, mask = DeepPot(name + ".pth").eval(frames["coords"], frames["cells"], frames["types"],
                                                        spin=frames["spins"])
        np.savez(name + "_ref.npz", energy=e.reshape(-1), forces=f, force_mag=fm, virial=v)
""")


def same_settings(a, b) -> bool:
    """Every model setting equal (the initialisation seed aside, which DeePMD-kit does not keep)."""
    import dataclasses

    first, second = dataclasses.asdict(a.config), dataclasses.asdict(b.config)
    return {k: v for k, v in first.items() if k != "seed"} == {k: v for k, v in second.items() if k != "seed"}


@needs_deepmd
@needs_nio_data
@pytest.mark.slow
def test_against_deepmd_kit(tmp_path):
    """A DeePMD-kit-trained model read from .dp, .pt, .pth of dp freeze and .pth of dp convert-backend, and a model
    exported from here, agree with DeePMD-kit's DeepPot (frozen .pth) on real NiO frames in energy, forces and
    force_mag; the exported model comes back from convert-backend's .pth and from a .pt2 archive as DeePMD-kit
    reads it, with every setting."""
    config = {
        "model": {"type_map": ["Ni", "O"],
                  "descriptor": {"type": "se_e2_a", "sel": [60, 60], "rcut_smth": 5.4, "rcut": 5.6,
                                 "neuron": [6, 12], "resnet_dt": True, "axis_neuron": 4, "seed": 1},
                  "fitting_net": {"neuron": [16, 16], "resnet_dt": True, "seed": 1},
                  "spin": {"use_spin": [True, False], "virtual_scale": [0.3140]}},
        "learning_rate": {"type": "exp", "decay_steps": 10, "start_lr": 0.001, "stop_lr": 1e-4},
        "loss": {"type": "ener_spin", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_fr": 1000,
                 "limit_pref_fr": 1, "start_pref_fm": 1000, "limit_pref_fm": 1},
        "training": {"training_data": {"systems": [str(NIO_DATA / "data_0")], "batch_size": 1},
                     "numb_steps": 5, "seed": 10, "disp_freq": 5, "save_freq": 5}}
    (tmp_path / "input.json").write_text(json.dumps(config))
    frames = nio_frames(3)
    np.savez(tmp_path / "frames.npz", coords=np.array([a.positions.reshape(-1) for a in frames]),
             cells=np.array([a.cell.array.reshape(-1) for a in frames]),
             types=np.array([0 if s == "Ni" else 1 for s in frames[0].get_chemical_symbols()]),
             spins=np.array([a.get_initial_magnetic_moments().reshape(-1) for a in frames]))
    exported = randomized(small_model(virtual_scale=[1.0, 0.0], rcut=5.0, rcut_smth=4.0, sel=[50, 50]))
    write_deepmd(exported, tmp_path / "exported.dp")
    write_pt2(dp_dict_from_model(exported), tmp_path / "exported.pt2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1",
           "DP_INTER_OP_PARALLELISM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([_deepmd_python(), "-c", _DEEPMD_DRIVER, json.dumps({"train": True})], check=False,
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    trained = {suffix: read_deepmd(tmp_path / name) for suffix, name in
               (("dp", "trained.dp"), ("pt", "model.ckpt.pt"), ("pth", "trained.pth"), ("converted", "converted.pth"))}
    for other in ("pt", "pth", "converted"):
        assert same_settings(trained[other], trained["dp"]), other
        for key, value in trained["dp"].state_dict().items():
            assert torch.equal(value, trained[other].state_dict()[key]), (other, key)
    for name in ("exported.pth", "exported.pt2", "from_pt2.dp"):  # convert-backend's .pth; .pt2 as DeePMD-kit reads it
        again = read_deepmd(tmp_path / name)
        assert same_settings(again, exported), name
        for key, value in exported.state_dict().items():
            assert torch.equal(value, again.state_dict()[key]), (name, key)
    for model, name in ((trained["dp"], "trained"), (exported, "exported")):
        ref = np.load(tmp_path / f"{name}_ref.npz")
        for k, atoms in enumerate(frames):
            energy, forces, torques = evaluate(model, atoms)
            assert abs(energy - ref["energy"][k]) <= 1e-10 * abs(energy)
            np.testing.assert_allclose(forces, ref["forces"][k], rtol=0, atol=1e-10 * np.abs(forces).max())
            np.testing.assert_allclose(torques, ref["force_mag"][k], rtol=0, atol=1e-10 * np.abs(torques).max())
            # DeePMD-kit's spin virial (spins fixed) has an antisymmetric part that ASE's Voigt stress drops
            virial = ref["virial"][k].reshape(3, 3)
            ours = stress_virial(model, atoms)
            np.testing.assert_allclose(ours, (virial + virial.T) / 2, rtol=0, atol=1e-10 * np.abs(virial).max())
