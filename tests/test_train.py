"""Training: the loss goes down, resume is exact, type maps are checked, the CLI works."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from ase_deepspin.model import ModelConfig
from ase_deepspin.io import load_model
from ase_deepspin.training.config import LossConfig, TrainConfig
from ase_deepspin.training.train import train
from conftest import NIO_DATA, needs_nio_data

pytestmark = needs_nio_data


def tiny_config(tmp_path, **overrides):
    params = dict(
        model=ModelConfig(type_map=["Ni", "O"], virtual_scale=[0.314, 0.0], rcut=4.0, rcut_smth=3.0, sel=[30, 30],
                          neuron=[4, 8], axis_neuron=4, fitting_neuron=[16, 16]),
        systems=[str(NIO_DATA / "data_0")], batch_size=2, numb_steps=40, start_lr=3e-3, stop_lr=3e-4,
        decay_steps=10, n_validation=8, disp_freq=10, save_freq=10, output_dir=str(tmp_path / "run"),
        loss=LossConfig(start_pref_e=1, limit_pref_e=10, start_pref_fr=100, limit_pref_fr=10, start_pref_fm=100,
                        limit_pref_fm=10),
    )
    params.update(overrides)
    return TrainConfig(**params)


def label_rms(frames):
    forces = np.concatenate([f.forces.ravel() for f in frames])
    torques = np.concatenate([f.torques[f.symbols == "Ni"].ravel() for f in frames])
    return np.sqrt(np.mean(forces**2)), np.sqrt(np.mean(torques**2))


def test_training_learns_forces_and_torques_of_held_out_frames(tmp_path):
    from ase_deepspin.io.frames import read_frames, split_frames

    cfg = tiny_config(tmp_path, numb_steps=150, start_lr=1e-2, stop_lr=1e-3, decay_steps=50, disp_freq=50)
    path = train(cfg, progress=False, log=lambda *a: None)
    last = json.loads((tmp_path / "run" / "lcurve.json").read_text())[-1]
    # predicting zero forces and torques would give the labels' RMS
    f_rms, m_rms = label_rms(split_frames(read_frames(cfg.systems[0]), cfg.n_validation, cfg.split_seed)[1])
    assert last["val_f"] < 0.85 * f_rms
    assert last["val_m"] < 0.9 * m_rms
    assert (tmp_path / "run" / "lcurve.png").is_file()
    table = (tmp_path / "run" / "lcurve.out").read_text().splitlines()
    assert table[0].split()[1:3] == ["step", "rmse_e_val"] and int(table[-1].split()[0]) == cfg.numb_steps
    assert json.loads((tmp_path / "run" / "input.json").read_text())["numb_steps"] == cfg.numb_steps
    assert load_model(path).config == cfg.model


@pytest.mark.parametrize("augment", [False, True])
def test_resumed_run_ends_with_the_same_weights(tmp_path, augment):
    """Also with random spin rotations: they are drawn from (seed, step), so a resumed run draws the same."""
    full = train(tiny_config(tmp_path / "a", numb_steps=24, augment_spin_rotation=augment), progress=False,
                 log=lambda *a: None)
    # an interrupted run: stop at step 10 (the time budget of a killed job), then resume
    cut = tiny_config(tmp_path / "b", numb_steps=10, augment_spin_rotation=augment)
    train(cut, progress=False, log=lambda *a: None)
    resumed = train(tiny_config(tmp_path / "b", numb_steps=24, augment_spin_rotation=augment),
                    resume=tmp_path / "b" / "run" / "checkpoint.pt", progress=False, log=lambda *a: None)
    a, b = load_model(full).state_dict(), load_model(resumed).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if augment:  # and the rotations did act: the same run without them ends elsewhere
        plain = load_model(train(tiny_config(tmp_path / "c", numb_steps=24), progress=False, log=lambda *a: None))
        assert not torch.equal(plain.state_dict()["fitting.0.0.weight"], a["fitting.0.0.weight"])


def test_type_map_that_disagrees_with_the_data(tmp_path):
    cfg = tiny_config(tmp_path, model=ModelConfig(type_map=["Fe", "O"], virtual_scale=[0.3, 0.0], rcut=4.0,
                                                   rcut_smth=3.0, sel=[30, 30]))
    with pytest.raises(ValueError, match=r"\['Ni'\] are not in the model's type_map"):
        train(cfg, progress=False, log=lambda *a: None)


def test_yaml_config_uses_deepmd_names(tmp_path):
    text = f"""
model:
  type_map: [Ni, O]
  descriptor: {{type: se_e2_a, sel: [20, 20], rcut_smth: 3.0, rcut: 4.0, neuron: [4, 8], axis_neuron: 4}}
  fitting_net: {{neuron: [8, 8], resnet_dt: true}}
  spin: {{use_spin: [true, false], virtual_scale: [0.314]}}
learning_rate: {{type: exp, start_lr: 1e-3, stop_lr: 1.0e-5, decay_steps: 100}}
loss: {{type: ener_spin, start_pref_e: 0.02, limit_pref_e: 1, start_pref_fr: 1000, limit_pref_fr: 1,
        start_pref_fm: 1000, limit_pref_fm: 1}}
training:
  training_data: {{systems: [{NIO_DATA}], batch_size: 2}}
  numb_steps: 7
"""
    (tmp_path / "in.yaml").write_text(text)
    cfg = TrainConfig.from_yaml(tmp_path / "in.yaml")
    assert cfg.model.virtual_scale == [0.314, 0.0]
    assert cfg.model.sel == [20, 20, 20, 20]
    assert cfg.batch_size == 2 and cfg.numb_steps == 7 and cfg.loss.start_pref_fm == 1000
    assert cfg.start_lr == 1e-3  # written as JSON writes it: PyYAML alone reads "1e-3" as a string
    # what is not implemented is refused by name, never accepted and ignored
    for old, new, match in [("numb_steps", "numb_stepz", "numb_stepz"),
                            ("resnet_dt: true}", "resnet_dt: true, activation_function: gelu}", "gelu"),
                            ("type: exp", "type: cosine", "cosine"),
                            ("type: ener_spin", "type: ener", "'ener'"),
                            ("start_pref_e: 0.02", "start_pref_ee: 0.02", "start_pref_ee"),
                            ("decay_steps: 100", "decay_step: 100", "decay_step"),
                            ("virtual_scale:", "virtual_scal:", r"spin keys \['virtual_scal'\]"),
                            ("fitting_net:", "fiting_net:", "fiting_net"),
                            ("type_map: [Ni, O]", "type_map: [Ni, O", "not valid YAML at line")]:
        (tmp_path / "bad.yaml").write_text(text.replace(old, new))
        with pytest.raises(ValueError, match=match):
            TrainConfig.from_yaml(tmp_path / "bad.yaml")


def test_cli_train_info_test_freeze(tmp_path, capsys):
    from ase_deepspin.cli import main
    import yaml

    cfg = {"model": {"type_map": ["Ni", "O"],
                     "descriptor": {"sel": [20, 20], "rcut_smth": 3.0, "rcut": 4.0, "neuron": [4, 8], "axis_neuron": 4},
                     "fitting_net": {"neuron": [8, 8]}, "spin": {"use_spin": [True, False], "virtual_scale": [0.314]},
                     "short_range": {"type": "zbl", "margin": 0.1, "width": 0.4}},
           "training": {"training_data": {"systems": [str(NIO_DATA / "data_1")], "batch_size": 2}, "numb_steps": 4,
                        "n_validation": 4, "output_dir": str(tmp_path / "run")}}
    (tmp_path / "in.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "in.yaml")]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "in.yaml")]) == 2  # an earlier run is never silently replaced
    assert "holds an earlier run" in capsys.readouterr().err
    model = tmp_path / "run" / "model.pt"
    assert main(["info", str(model)]) == 0
    info = capsys.readouterr().out
    assert "rcut            4.0" in info and "exactly even in S" in info and "ZBL wall" in info
    assert "trained         4 steps" in info and "held-out RMSE" in info and "checksum verified" in info
    assert "training data   Ni |S| 1.27" in info  # the DeltaSpin moments, 1.2733-1.2823 μB
    (low, high), none = load_model(model).config.data_ranges["moment"]
    assert 1.27 < low < high < 1.29 and none is None
    wall = load_model(model).config.short_range  # below the data's shortest Ni–O distance, 2.08 Å
    assert wall["charges"] == [28.0, 8.0] and 1.5 < wall["r_outer"][0][1] < 2.0
    assert wall["r_outer"][0][1] - wall["r_inner"][0][1] == pytest.approx(0.4)
    assert main(["test", str(model), str(NIO_DATA / "data_1"), "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "60 frames" in out and "torques" in out and (tmp_path / "p.png").is_file()
    assert main(["freeze", str(tmp_path / "run" / "checkpoint.pt"), str(tmp_path / "f.pt")]) == 0
    assert main(["info", str(tmp_path / "run" / "checkpoint.pt")]) == 2
    assert "ase-deepspin freeze" in capsys.readouterr().err
    # never an ase-deepspin file under a DeePMD-kit name
    assert main(["convert", str(model), str(tmp_path / "x.yaml")]) == 2 and not (tmp_path / "x.yaml").exists()
    assert main(["info", str(tmp_path / "nope.pt")]) == 2


def test_missing_label_files_are_named(tmp_path, capsys):
    import shutil

    from ase_deepspin.cli import main

    system = tmp_path / "data"
    shutil.copytree(NIO_DATA / "data_1", system)
    (system / "set.000" / "force_mag.npy").unlink()
    with pytest.raises(ValueError, match=r"missing torques \(force_mag.npy\)"):
        train(tiny_config(tmp_path, systems=[str(system)]), progress=False, log=lambda *a: None)
    assert main(["test", "nio", str(system), "--no-plot"]) == 0  # what is labelled is tested
    out = capsys.readouterr().out
    assert "forces" in out and "torques    not labelled in every frame (force_mag.npy)" in out
    for name in ("energy.npy", "force.npy"):
        (system / "set.000" / name).unlink()
    assert main(["test", "nio", str(system), "--no-plot"]) == 2
    assert "no frame carries labels" in capsys.readouterr().err


def test_frames_without_force_labels_weigh_only_energies_and_torques(tmp_path):
    """Spins on a frozen lattice come without forces: such frames train, and their predicted forces never
    enter the loss (in a batch mixing both kinds, only the labelled atoms count)."""
    import dataclasses
    import shutil

    from ase_deepspin.io.frames import read_frames
    from ase_deepspin.model import DeepSpinModel
    from ase_deepspin.training.train import PreparedFrames, errors

    system = tmp_path / "data"
    shutil.copytree(NIO_DATA / "data_1", system)
    (system / "set.000" / "force.npy").unlink()
    cfg = tiny_config(tmp_path, systems=[str(system)], numb_steps=6, n_validation=2)
    train(cfg, progress=False, log=lambda *a: None)
    assert (tmp_path / "run" / "model.pt").is_file()

    model = DeepSpinModel(cfg.model)
    labelled = read_frames(NIO_DATA / "data_1")[:2]
    bare = [dataclasses.replace(f, forces=None) for f in labelled]
    alone = errors(model, PreparedFrames(bare, model).batch([0, 1]), create_graph=False)
    assert float(alone["f"]) == 0.0 and float(alone["m"]) > 0
    mixed = errors(model, PreparedFrames([labelled[0], bare[1]], model).batch([0, 1]), create_graph=False)
    first = errors(model, PreparedFrames([labelled[0]], model).batch([0]), create_graph=False)
    assert float(mixed["f"]) == pytest.approx(float(first["f"]), rel=1e-12)


def test_cli_version():
    import subprocess
    import sys

    from ase_deepspin import __version__

    out = subprocess.run([sys.executable, "-m", "ase_deepspin.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"ase-deepspin {__version__}"


def test_a_run_stopped_by_its_time_budget_records_its_last_step(tmp_path):
    path = train(tiny_config(tmp_path, numb_steps=1000, max_time=1e-9, disp_freq=100), progress=False,
                 log=lambda *a: None)
    curve = json.loads((tmp_path / "run" / "lcurve.json").read_text())
    assert [row["step"] for row in curve] == [1]
    training = load_model(path).provenance["training"]
    assert training["steps"] == 1 and training["held_out_rmse"]["forces_meV_per_A"] == pytest.approx(
        1e3 * curve[-1]["val_f"])


def test_held_out_parts_are_reported_apart(tmp_path, capsys):
    """Each held-out selection's RMSE is kept beside the pooled one, and the parts pool back to it."""
    from ase_deepspin.cli import main

    cfg = tiny_config(tmp_path, numb_steps=4, n_validation=0, held_out=["data_0#0:4", "data_0#10:22"])
    path = train(cfg, progress=False, log=lambda *a: None)
    training = load_model(path).provenance["training"]
    parts, pooled = training["held_out_rmse_by_selection"], training["held_out_rmse"]
    assert list(parts) == cfg.held_out
    for key in ("energy_meV_per_atom", "forces_meV_per_A", "torques_meV_per_muB"):  # equal atoms per frame
        assert np.sqrt((4 * parts["data_0#0:4"][key] ** 2 + 12 * parts["data_0#10:22"][key] ** 2) / 16) == \
            pytest.approx(pooled[key], rel=1e-9)
    assert parts["data_0#0:4"] != parts["data_0#10:22"]
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(pooled over all validation frames)" in out and "  data_0#10:22: energy" in out


def test_data_ranges_of_a_model_file_are_recomputed_from_its_training_frames(tmp_path):
    """record_data_ranges finds the run's own training frames again (its recorded ranges come back exactly)
    and changes nothing else of the file."""
    from ase_deepspin.training.train import record_data_ranges

    path = train(tiny_config(tmp_path, numb_steps=2, held_out=["data_0#0:5"]), progress=False, log=lambda *a: None)
    before = load_model(path)
    ranges = record_data_ranges(path, tmp_path / "again.pt")
    after = load_model(tmp_path / "again.pt")
    assert ranges == before.config.data_ranges == after.config.data_ranges
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in before.state_dict().items())
    assert "data_ranges_recomputed" in after.provenance and after.provenance["training"] == before.provenance["training"]


def test_change_bias_removes_the_mean_energy_offset_of_the_training_frames(tmp_path, capsys):
    """After change-bias the training frames' energy residuals average zero (one type count per frame);
    forces and torques are those of the model before; the held-out errors the file records are the
    shifted model's own."""
    from ase_deepspin.cli import main
    from ase_deepspin.training.train import PreparedFrames, _training_run, evaluate, select_frames, validation_rmse

    path = train(tiny_config(tmp_path, numb_steps=5, n_validation=0, held_out=["data_0#0:5"]), progress=False,
                 log=lambda *a: None)
    assert main(["change-bias", str(path), "-o", str(tmp_path / "shifted.pt")]) == 0
    assert "energy bias shifted by" in capsys.readouterr().out
    residuals, outputs, recorded = [], [], []
    for file in (path, tmp_path / "shifted.pt"):
        model, cfg = _training_run(file)
        _, frames, valid = select_frames(cfg)
        held_out = {k: 1e3 * v for k, v in validation_rmse(model, PreparedFrames(valid, model)).items()}
        recorded.append(model.provenance["training"]["held_out_rmse"])
        assert [recorded[-1][k] for k in ("energy_meV_per_atom", "forces_meV_per_A", "torques_meV_per_muB")] == \
            pytest.approx([held_out["e"], held_out["f"], held_out["m"]], rel=1e-6)
        assert model.provenance["training"]["held_out_rmse_by_selection"]["data_0#0:5"] == pytest.approx(recorded[-1])
        data = PreparedFrames(frames, model)
        out = [evaluate(model, data.batch([k]), create_graph=False) for k in range(len(data))]
        residuals.append(np.array([f.energy - float(o["energy"]) for f, o in zip(frames, out)]))
        outputs.append(torch.cat([o["forces"] for o in out]))
    assert abs(residuals[0].mean()) > 1e-4 and abs(residuals[1].mean()) < 1e-9  # NiO: Ni and O counts fixed
    assert torch.allclose(outputs[0], outputs[1], atol=1e-12)
    assert recorded[0]["energy_meV_per_atom"] != pytest.approx(recorded[1]["energy_meV_per_atom"])
    assert "energy_bias_shift" in load_model(tmp_path / "shifted.pt").provenance


def test_relative_errors_weigh_each_atom_by_its_label():
    """relative_f/relative_fm divide each atom's error by |label| + shift (DeePMD-kit's relative_f)."""
    from ase_deepspin.io.frames import read_frames
    from ase_deepspin.model.baseline import relative_weights
    from ase_deepspin.training.train import PreparedFrames, errors
    from conftest import small_model

    forces = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(relative_weights(forces, 1.0), torch.tensor([[1 / 6.0], [1.0]], dtype=torch.float64))
    assert torch.equal(relative_weights(forces, None), torch.ones(2, 1, dtype=torch.float64))
    model = small_model()
    batch = PreparedFrames(read_frames(NIO_DATA / "data_0")[:2], model).batch([0, 1])
    plain = errors(model, batch, create_graph=False)
    shift = 1e4  # far above every label: relative errors are the absolute ones over the shift
    relative = errors(model, batch, create_graph=False, loss=LossConfig(relative_f=shift, relative_fm=shift))
    for k in ("f", "m"):
        assert float(relative[f"{k}_absolute"]) == float(plain[k])
        assert float(relative[k]) * shift**2 == pytest.approx(float(plain[k]), rel=1e-3)
    small = errors(model, batch, create_graph=False, loss=LossConfig(relative_f=0.01))
    assert float(small["f"]) > 10 * float(plain["f"])  # labels of ~0.01 eV/Å: their errors count far more
    assert float(small["m"]) == float(plain["m"])


def test_along_spin_weight_scales_only_the_torque_error_along_each_moment():
    """along_spin_fm w: |e_across|² + w |e_along|² per atom; w = 0 leaves only the part across S."""
    from ase_deepspin.io.frames import read_frames
    from ase_deepspin.training.train import PreparedFrames, along_spin_weighted, errors
    from conftest import small_model

    rng = np.random.default_rng(0)
    spins, error = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    spins[2] = 0.0  # no direction: the error stays whole
    unit = spins / np.maximum(np.linalg.norm(spins, axis=1, keepdims=True), 1e-300)
    along = (error * unit).sum(1)
    for w in (0.0, 0.25, 1.0):
        got = along_spin_weighted(torch.tensor(error), torch.tensor(spins), w).numpy()
        expected = (error**2).sum(1) - (1 - w) * along**2
        assert np.allclose((got**2).sum(1), expected, atol=1e-12)
    model = small_model()
    batch = PreparedFrames(read_frames(NIO_DATA / "data_0")[:2], model).batch([0, 1])
    plain = errors(model, batch, create_graph=False)
    across = errors(model, batch, create_graph=False, loss=LossConfig(along_spin_fm=0.0))
    assert float(across["m_absolute"]) == float(plain["m"]) and 0 < float(across["m"]) < float(plain["m"])
    unforced = [dataclasses.replace(f, forces=None) for f in read_frames(NIO_DATA / "data_0")[:2]]
    batch = PreparedFrames(unforced, model).batch([0, 1])  # frames without forces weigh energies and torques only
    assert all(np.isfinite(float(v)) for v in errors(model, batch, False, LossConfig(along_spin_fm=0.1)).values())
    raw = json.loads(json.dumps(DEEPMD_SPIN_INPUT))
    raw["training"]["training_data"]["systems"] = [str(NIO_DATA / "data_0")]
    raw["loss"]["along_spin_fm"] = -1
    with pytest.raises(ValueError, match="along_spin_fm"):
        TrainConfig.from_dict(raw)


def test_accuracy_table_splits_torques_along_and_across_the_moments():
    from ase_deepspin.training.evaluate import error_table, torque_parts

    rng = np.random.default_rng(0)
    spins, reference = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    along = spins / np.linalg.norm(spins, axis=1, keepdims=True)
    # an error along each moment only: the transverse part is exact
    predicted = reference + 0.2 * along
    table = error_table({"torques": (reference.ravel(), predicted.ravel())}
                        | torque_parts(spins, reference, predicted))
    assert table["torques_longitudinal"]["rmse"] == pytest.approx(200.0)
    assert table["torques_transverse"]["rmse"] < 1e-9
    predicted = reference + rng.normal(size=(50, 3))
    table = error_table({"torques": (reference.ravel(), predicted.ravel())}
                        | torque_parts(spins, reference, predicted))
    total = table["torques"]["rmse"] ** 2
    parts = (table["torques_longitudinal"]["rmse"] ** 2 + 2 * table["torques_transverse"]["rmse"] ** 2) / 3
    assert parts == pytest.approx(total, rel=1e-12)
    assert table["torques"]["null"] == pytest.approx(1e3 * np.sqrt(np.mean(reference**2)))


def test_warm_start_begins_from_the_given_model(tmp_path):
    """init_model: zero steps reproduce the file's model exactly (weights, statistics, energy bias), a few
    steps move away from it and lower the loss; another architecture is refused by name."""
    first = train(tiny_config(tmp_path / "a", numb_steps=20), progress=False, log=lambda *a: None)
    same = train(tiny_config(tmp_path / "b", numb_steps=0, init_model=str(first)), progress=False, log=lambda *a: None)
    a, b = load_model(first).state_dict(), load_model(same).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(tiny_config(tmp_path / "c", numb_steps=20), progress=False, log=lambda *a: None)
    warm = train(tiny_config(tmp_path / "d", numb_steps=20, init_model=str(first)), progress=False, log=lambda *a: None)
    curve = lambda run: json.loads((tmp_path / run / "run" / "lcurve.json").read_text())[-1]  # noqa: E731
    assert curve("d")["val_f"] < curve("c")["val_f"]  # 40 steps in all beat 20 from scratch
    moved = load_model(warm).state_dict()
    assert torch.equal(moved["descriptor.env_mean"], a["descriptor.env_mean"]) and not torch.equal(moved["fitting.0.0.weight"],
                                                                              a["fitting.0.0.weight"])
    other = tiny_config(tmp_path / "e", numb_steps=0, init_model=str(first))
    other.model = ModelConfig(**{**other.model.__dict__, "fitting_neuron": [8, 8]})
    with pytest.raises(ValueError, match="fitting_neuron"):
        train(other, progress=False, log=lambda *a: None)


def test_the_loader_names_allowed_keys_and_expected_types():
    from ase_deepspin.training.config import load_input

    base = {"model": {"type_map": ["Ni"]}, "training": {"training_data": {"systems": ["x"]}}}
    with pytest.raises(ValueError, match=r"unknown model.descriptor keys \['rcutt'\] \(allowed: type, sel, rcut"):
        load_input({**base, "model": {"type_map": ["Ni"], "descriptor": {"rcutt": 5.0}}})
    with pytest.raises(ValueError, match=r"training.numb_steps: expected an integer, got '10'"):
        load_input({**base, "training": {"training_data": {"systems": ["x"]}, "numb_steps": "10"}})
    with pytest.raises(ValueError, match=r"model.descriptor.sel: expected list of int or int"):
        load_input({**base, "model": {"type_map": ["Ni"], "descriptor": {"sel": [1.5]}}})
    spec = load_input({**base, "learning_rate": {"start_lr": 1}})
    assert spec.learning_rate.start_lr == 1.0 and isinstance(spec.learning_rate.start_lr, float)


@pytest.mark.parametrize("name", ["nio_train.yaml", "fe_train.yaml", "nio_train_small.yaml"])
def test_every_key_of_the_shipped_recipes_is_in_the_generated_reference(name, capsys):
    """The recipes load strictly, and `ase-deepspin doc-train-input` documents each key they use."""
    import yaml
    from pathlib import Path

    from ase_deepspin.cli import main

    path = Path(__file__).resolve().parents[1] / "examples" / name
    TrainConfig.from_yaml(path)
    assert main(["doc-train-input"]) == 0
    reference = capsys.readouterr().out

    def keys(mapping, prefix=""):
        for k, v in mapping.items():
            yield prefix, k
            if isinstance(v, dict) and k not in ("baseline", "short_range"):
                yield from keys(v, f"{prefix}.{k}" if prefix else k)

    for section, k in keys(yaml.safe_load(path.read_text())):
        heading = f"## `{section}`" if section else "## top level"
        assert heading in reference, heading
        part = reference.split(heading, 1)[1].split("\n## ", 1)[0]
        assert f"| `{k}` |" in part, (section, k)


@pytest.mark.parametrize("bad, match", [(dict(numb_steps=0), "numb_steps"),
                                        (dict(start_lr=1e-4, stop_lr=1e-2), "must decay"),
                                        (dict(stop_lr=0.0), "must decay"),
                                        (dict(max_time=-5), "max_time"),
                                        (dict(batch_size=0), "batch_size")])
def test_schedules_that_cannot_train_are_refused_before_any_work(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        train(tiny_config(tmp_path, **bad), progress=False, log=lambda *a: None)
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_an_error(tmp_path, monkeypatch):
    from ase_deepspin.training import train as training

    step = training.take_step
    monkeypatch.setattr(training, "take_step", lambda model, optimizer, batch, cfg, i, offsets=None: step(
        model, optimizer, batch, cfg, i) | ({"loss": float("nan")} if i == 3 else {}))
    with pytest.raises(RuntimeError, match="diverged at step 3"):
        train(tiny_config(tmp_path), progress=False, log=lambda *a: None)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_change_bias_takes_names_and_data_paths_and_never_changes_a_shipped_model_in_place(tmp_path, monkeypatch):
    from ase_deepspin.training.train import change_bias

    with pytest.raises(ValueError, match="shipped model: it is not changed in place"):
        change_bias("nio")
    monkeypatch.chdir(NIO_DATA)  # the run records its data relative to the folder it ran in
    path = train(tiny_config(tmp_path / "a", numb_steps=2, n_validation=0, held_out=["data_0#0:5"],
                             systems=["data_0"]), progress=False, log=lambda *a: None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"\['data_0'\] .* give them with --systems"):
        change_bias(path, tmp_path / "b.pt", log=lambda *a: None)
    lines = []
    change_bias(path, tmp_path / "b.pt", systems=[str(NIO_DATA / "data_0")], log=lines.append)
    assert (tmp_path / "b.pt").is_file() and lines[0].startswith("reading the training frames")


# DeePMD-kit's examples/spin/se_e2_a/input_torch.json as it is written there (data paths and step counts aside)
DEEPMD_SPIN_INPUT = {
    "model": {
        "type_map": ["Ni", "O"],
        "descriptor": {"type": "se_e2_a", "sel": [60, 60], "rcut_smth": 5.4, "rcut": 5.6, "neuron": [25, 50, 100],
                       "resnet_dt": False, "axis_neuron": 16, "seed": 1, "_comment": " that's all"},
        "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1, "_comment": " that's all"},
        "data_stat_nbatch": 10,
        "spin": {"use_spin": [True, False], "virtual_scale": [0.3140], "_comment": " that's all"},
        "_comment": " that's all"},
    "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 0.001, "stop_lr": 3.51e-8,
                      "_comment": "that's all"},
    "loss": {"type": "ener_spin", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_fr": 1000, "limit_pref_fr": 1,
             "start_pref_fm": 1000, "limit_pref_fm": 1, "_comment": " that's all"},
    "training": {
        "training_data": {"systems": ["data_0"], "batch_size": 3, "_comment": "that's all"},
        "validation_data": {"systems": ["data_1"], "batch_size": 1, "numb_btch": 3, "_comment": "that's all"},
        "numb_steps": 2, "seed": 10, "disp_file": "lcurve.out", "disp_freq": 2, "save_freq": 2,
        "_comment": "that's all"},
    "_comment": "that's all"}


def test_deepmd_kits_spin_example_input_trains_as_written(tmp_path, monkeypatch):
    from ase_deepspin.cli import main

    monkeypatch.chdir(NIO_DATA)
    raw = json.loads(json.dumps(DEEPMD_SPIN_INPUT))
    raw["training"]["disp_file"] = "curve.txt"
    raw["training"]["output_dir"] = str(tmp_path / "run")
    (tmp_path / "input.json").write_text(json.dumps(raw))
    cfg = TrainConfig.from_yaml(tmp_path / "input.json")
    assert cfg.validation_systems == ["data_1"] and cfg.n_validation == 0 and cfg.stat_frames == 30
    assert cfg.model.virtual_scale == [0.314, 0.0] and cfg.model.magnetic == [True, False]
    assert main(["train", str(tmp_path / "input.json")]) == 0
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.provenance["training"]["validation_frames"] == 60  # data_1, whole
    assert (tmp_path / "run" / "curve.txt").is_file()


@pytest.mark.parametrize("change, expected", [
    (lambda r: r["model"]["spin"].update(virtual_scale=0.314, use_spin=["Ni"]), ([0.314, 0.0], [True, False])),
    (lambda r: r["model"]["spin"].update(use_spin=[0]), ([0.314, 0.0], [True, False]))])
def test_deepmd_kits_other_spellings_mean_the_same(tmp_path, change, expected):
    raw = json.loads(json.dumps(DEEPMD_SPIN_INPUT))
    raw["training"]["training_data"]["systems"] = [str(NIO_DATA / "data_0")]
    raw["training"]["validation_data"]["systems"] = [str(NIO_DATA / "data_1")]
    change(raw)
    cfg = TrainConfig.from_dict(raw)
    assert (cfg.model.virtual_scale, cfg.model.magnetic) == expected


def test_deepmd_kits_auto_sel_and_batch_size():
    raw = json.loads(json.dumps(DEEPMD_SPIN_INPUT))
    raw["training"]["training_data"] = {"systems": [str(NIO_DATA / "data_0")], "batch_size": "auto:64"}
    raw["training"].pop("validation_data")
    raw["model"]["descriptor"]["sel"] = "auto"
    cfg = TrainConfig.from_dict(raw)
    assert cfg.batch_size == 2  # 64 atoms from 32-atom frames
    # NiO within 5.6 Å: at most 42 Ni and 38 O around any atom of data_0 (ase's neighbour list), times 1.1
    from ase.neighborlist import neighbor_list

    from ase_deepspin.io.frames import read_frames

    atoms = read_frames(NIO_DATA / "data_0")[0].to_atoms()
    i, j = neighbor_list("ij", atoms, 5.6)
    assert cfg.model.sel[0] >= 1.1 * max(np.bincount(i[atoms.numbers[j] == 28]))
    for bad in ("auto:x", "many"):
        raw["model"]["descriptor"]["sel"] = bad
        with pytest.raises(ValueError, match="descriptor.sel"):
            TrainConfig.from_dict(raw)
    raw["model"]["descriptor"]["sel"] = [60, 60]
    raw["model"]["fitting_net"]["seed"] = 7
    with pytest.raises(ValueError, match="fitting_net.seed 7 differs"):
        TrainConfig.from_dict(raw)
    raw["model"]["fitting_net"]["seed"] = 1
    raw["model"]["spin"]["use_spin"] = ["Fe"]
    with pytest.raises(ValueError, match="use_spin"):
        TrainConfig.from_dict(raw)
