"""The collinear DFT labeller (ase_deepspin.calculators.collinear_dft) and what its labels need from the trainer:
frames that carry only some labels, systems whose energies have their own zero, the labeller's record in the
files. The GPAW tests run at settings far too low for physics (a 4-atom NiO cell, 250 eV, a few k-points,
about 10 s a calculation) and skip where GPAW is not installed (the "dft" extra)."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch
import yaml

from ase_deepspin.build import nio_afm
from ase_deepspin.calculators.collinear_dft import collinear_axis
from ase_deepspin.io import load_model
from ase_deepspin.io.frames import read_frames, write_deepmd_npy, write_extxyz
from ase_deepspin.model import DeepSpinModel
from ase_deepspin.training.train import (PreparedFrames, energy_groups, errors, fit_energy_offsets, shift_energy_bias,
                                         train)
from test_train import NIO_DATA, tiny_config

needs_gpaw = pytest.mark.skipif(importlib.util.find_spec("gpaw") is None,
                                reason="GPAW is not installed (pip install -e '.[dft]', see pyproject.toml)")
TINY = {"ecut_eV": 250.0, "kpoint_density": 0.5}  # settings of the tests only


def test_collinear_axis_of_canted_spins():
    spins = nio_afm().get_initial_magnetic_moments()
    axis, signed, angle = collinear_axis(spins)
    assert np.allclose(np.abs(axis), np.abs(spins[0]) / np.linalg.norm(spins[0])) and angle < 1e-12
    assert np.allclose(signed[:, None] * axis, spins)
    unit = spins[0] / np.linalg.norm(spins[0])
    across = np.cross(unit, [1.0, 0.0, 0.0])
    canted = spins.copy()
    canted[0] = np.linalg.norm(spins[0]) * (np.cos(0.1) * unit + np.sin(0.1) * across / np.linalg.norm(across))
    # two equal moments, one turned by 0.1 rad off antiparallel: the axis halves the angle
    assert collinear_axis(canted)[2] == pytest.approx(0.05, abs=1e-9)
    assert collinear_axis(-spins)[1] == pytest.approx(signed)  # the axis follows the first spin: same signs
    with pytest.raises(ValueError, match="no atom has a spin"):
        collinear_axis(np.zeros((4, 3)))


def labelled_frames(n=2):
    """DeltaSpin NiO frames dressed as a collinear DFT labeller leaves them."""
    frames = read_frames(NIO_DATA / "data_0")[:n]
    return [dataclasses.replace(f, torque_labels="transverse", labeller={"code": "test", "ecut_eV": 1.0},
                                label_moments=1.5 * f.spins) for f in frames]


@pytest.mark.parametrize("kind", ["npy", "extxyz"])
def test_labeller_records_survive_the_files(tmp_path, kind):
    frames = labelled_frames()
    path = tmp_path / ("sys" if kind == "npy" else "frames.xyz")
    write_deepmd_npy(path, frames, ["Ni", "O"]) if kind == "npy" else write_extxyz(path, frames)
    back = read_frames(path)
    for a, b in zip(frames, back):
        assert b.torque_labels == "transverse" and b.labeller == a.labeller
        assert np.allclose(b.label_moments, a.label_moments) and np.allclose(b.torques, a.torques)
    if kind == "npy":
        assert json.loads((path / "labeller.json").read_text())["method"] == {"code": "test", "ecut_eV": 1.0}
        with pytest.raises(ValueError, match="share one labeller"):
            write_deepmd_npy(tmp_path / "mixed", [frames[0], dataclasses.replace(frames[1], labeller=None)],
                             ["Ni", "O"])
    with pytest.raises(ValueError, match="torque_labels must be one of"):
        dataclasses.replace(frames[0], torque_labels="longitudinal")


def test_a_frame_weighs_only_the_torque_labels_it_carries(tmp_path):
    """Transverse labels: the part of the error along each spin counts nowhere; no labels: nothing counts."""
    model = DeepSpinModel(tiny_config(tmp_path).model)
    full = read_frames(NIO_DATA / "data_0")[:2]
    transverse = [dataclasses.replace(f, torque_labels="transverse") for f in full]
    spins = full[0].spins
    unit = np.divide(spins, np.linalg.norm(spins, axis=1, keepdims=True), where=spins != 0, out=np.zeros_like(spins))
    along = [dataclasses.replace(f, torques=f.torques + 0.3 * unit) for f in transverse[:1]] + transverse[1:]
    m = lambda frames: float(errors(model, PreparedFrames(frames, model).batch([0, 1]), False)["m"])  # noqa: E731
    assert m(along) == pytest.approx(m(transverse), rel=1e-12)
    assert m(full) > m(transverse)  # the full label also scores the part along the spins
    across = np.cross(unit, [0.0, 0.0, 1.0])
    assert m([dataclasses.replace(transverse[0], torques=transverse[0].torques + 0.3 * across)] + transverse[1:]) \
        > m(transverse) + 0.01
    none = [dataclasses.replace(full[0], torque_labels="none", torques=None), full[1]]
    assert m(none) == pytest.approx(float(errors(model, PreparedFrames(full[1:], model).batch([0]), False)["m"]))


def test_relative_energies_train_their_differences_only(tmp_path):
    """A system whose energies carry another zero (+50 eV per frame here) trains like the original: its
    constant comes out as the shift, the bias ignores it, and the held-out energy error is that of a run
    without it."""
    shifted = [dataclasses.replace(f, energy=f.energy + 50.0) for f in read_frames(NIO_DATA / "data_1")]
    write_deepmd_npy(tmp_path / "other_code", shifted, ["Ni", "O"])
    plain = tiny_config(tmp_path / "a", systems=[str(NIO_DATA / "data_0"), str(NIO_DATA / "data_1")], n_validation=16)
    mixed = dataclasses.replace(plain, systems=[str(NIO_DATA / "data_0"), str(tmp_path / "other_code")],
                                relative_energy=["other_code"], output_dir=str(tmp_path / "b"))
    results = [load_model(train(c, progress=False, log=lambda *a: None)).provenance["training"] for c in (plain, mixed)]
    offset = results[1]["energy_offsets_eV_per_atom"]
    assert list(offset) == [str(tmp_path / "other_code")]
    assert list(offset.values())[0] == pytest.approx(50.0 / 32, abs=2e-3)  # model + offset·N = label
    e_plain, e_mixed = (r["held_out_rmse"]["energy_meV_per_atom"] for r in results)
    assert e_mixed < 1.5 * e_plain + 0.05, (e_plain, e_mixed)

    model = DeepSpinModel(plain.model)
    frames = read_frames(NIO_DATA / "data_0")[:3] + read_frames(tmp_path / "other_code")[:3]
    groups = energy_groups(frames, ["other_code"])
    data = PreparedFrames(frames, model, groups)
    before = model.energy_bias.clone()
    shift_energy_bias(model, data, frames)
    alone = DeepSpinModel(plain.model)
    shift_energy_bias(alone, PreparedFrames(frames[:3], alone), frames[:3])
    assert torch.allclose(model.energy_bias - before, alone.energy_bias - before)  # the +50 eV frames were ignored
    offsets = fit_energy_offsets(model, [data], 1)
    with pytest.raises(ValueError, match="constants are needed"):
        errors(model, data.batch([0, 3]), False)
    assert float(errors(model, data.batch([3, 4, 5]), False, offsets=offsets)["e"]) < 1e-4
    with pytest.raises(ValueError, match="names no system"):
        energy_groups(frames, ["nowhere"])
    # systems of one labeller (the same recorded settings) share one constant, of another their own
    for name, frames_of in (("a", labelled_frames(2)), ("b", labelled_frames(2)),
                            ("c", [dataclasses.replace(f, labeller={"code": "other"}) for f in labelled_frames(2)])):
        write_deepmd_npy(tmp_path / name, frames_of, ["Ni", "O"])
    groups = energy_groups([f for name in "abc" for f in read_frames(tmp_path / name)], ["a", "b", "c"])
    assert groups == {str(tmp_path / "a"): 0, str(tmp_path / "b"): 0, str(tmp_path / "c"): 1}


@needs_gpaw
def test_gpaw_labels_a_collinear_state():
    """AFM-II NiO: opposite moments on the two Ni, none on O; forces are −∂F/∂R of the free energy the frame
    records (central difference); canted spins are refused by the calculator and projected by label_frame."""
    from ase_deepspin.calculators.collinear_dft import gpaw_labeller

    labeller = gpaw_labeller(**TINY)
    atoms = nio_afm(a=4.186)
    atoms.positions[1] += [0.03, -0.02, 0.05]
    spins = atoms.get_initial_magnetic_moments()
    canted = atoms.copy()
    magnetic = np.linalg.norm(spins, axis=1, keepdims=True) > 0
    canted.set_initial_magnetic_moments(spins + 0.05 * magnetic * np.cross(spins[0], [1.0, 0.0, 0.0]))
    atoms.calc = labeller
    with pytest.raises(ValueError, match="not collinear"):
        canted.calc = labeller
        canted.get_potential_energy()
    frame = labeller.label_frame(canted)
    unit = spins[0] / np.linalg.norm(spins[0])
    # projected on their axis (the canted pair's axis is the original one), each length kept
    assert np.allclose(frame.spins @ unit, np.sign(spins @ unit) * np.linalg.norm(canted.get_initial_magnetic_moments(),
                                                                               axis=1), atol=1e-12)
    assert collinear_axis(frame.spins)[2] < 1e-12 and frame.torque_labels == "transverse"
    assert np.all(frame.torques == 0) and frame.labeller["code"] == "gpaw" and frame.labeller["ecut_eV"] == 250.0
    along = frame.label_moments @ unit
    assert along[0] > 0.5 and along[2] < -0.5 and abs(along[0] + along[2]) < 1e-2 and np.all(np.abs(along[[1, 3]]) < 0.1)
    h, energies = 0.01, []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[1, 0] += sign * h
        energies.append(labeller.label_frame(moved).energy)
    assert frame.forces[1, 0] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=3e-3)


@needs_gpaw
def test_label_command_continues_where_it_stopped(tmp_path, capsys):
    from ase.io import write

    from ase_deepspin.cli import main

    images = []
    for k in range(2):
        atoms = nio_afm(a=4.186)
        atoms.rattle(0.02, seed=k)
        images.append(atoms)
    write(tmp_path / "in.xyz", images, format="extxyz")
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(TINY))
    args = ["label", str(tmp_path / "in.xyz"), "-o", str(tmp_path / "out"), "--settings", str(tmp_path / "settings.yaml")]
    assert main(args + ["--index", ":1"]) == 0
    assert main(args) == 0
    assert "1 frames labelled, continuing" in capsys.readouterr().out
    frames = read_frames(tmp_path / "out")
    assert len(frames) == 2 and all(f.labeller["code"] == "gpaw" for f in frames)
    assert np.allclose(frames[1].positions, images[1].positions)
    assert main(["label", str(tmp_path / "in.xyz"), "-o", str(tmp_path / "out"), "--oracle", "nowhere:none"]) == 0
    assert "all 2 frames are labelled" in capsys.readouterr().out  # nothing left: the oracle is never built
    assert main(["label", str(tmp_path / "in.xyz"), "-o", str(tmp_path / "x"), "--oracle", "nowhere:none"]) == 2
    assert "oracle nowhere:none" in capsys.readouterr().err


@needs_gpaw
def test_active_learning_with_gpaw_labels(tmp_path):
    """The loop end to end with the DFT labeller, as NiO runs it: DeltaSpin frames beside GPAW's (another
    energy zero), exploration from the 4-atom GPAW cells; two iterations, one GPAW label each, which joins
    the relative energies; the labeller's record and the committee's scores in the summary."""
    from ase_deepspin.calculators.collinear_dft import gpaw_labeller
    from ase_deepspin.training.active import ExploreConfig, run_active_learning

    labeller = gpaw_labeller(**TINY)
    seeds = []
    for k in range(3):
        atoms = nio_afm(a=4.186)
        atoms.rattle(0.03, seed=k)
        seeds.append(labeller.label_frame(atoms))
    write_deepmd_npy(tmp_path / "seed", seeds, ["Ni", "O"])
    training = {"model": {"type_map": ["Ni", "O"],
                          "descriptor": {"type": "spin_invariant", "rcut": 4.0, "rcut_smth": 3.0, "sel": [40, 40],
                                         "neuron": [4, 8], "axis_neuron": 4},
                          "fitting_net": {"neuron": [16, 16]}, "spin": {"use_spin": [True, False]}},
                "learning_rate": {"start_lr": 3e-3, "stop_lr": 3e-4, "decay_steps": 10},
                "training": {"training_data": {"systems": [str(tmp_path / "seed")], "batch_size": 1,
                                               "relative_energy": ["seed"]}, "numb_steps": 30, "n_validation": 1,
                             "disp_freq": 10, "save_freq": 10}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(training))
    cfg = ExploreConfig(training=str(tmp_path / "train.yaml"), systems=[str(NIO_DATA / "data_0"), str(tmp_path / "seed")],
                        start_systems=[str(tmp_path / "seed")], relative_energy_labels=True, members=2,
                        iterations=2, temperatures_K=[300.0], canting_rad=[0.3], starts=1, steps=4, sample_every=2,
                        trust_f=(0.0, 1e9), trust_fm=(0.0, 1e9), max_labels=1, strain=0.0, dt_fs=0.5)
    summaries = run_active_learning(cfg, labeller, tmp_path / "al", log=lambda *a: None)
    assert [s["labelled"] for s in summaries] == [1, 1]
    for i, s in enumerate(summaries):
        assert set(s["committee_deviation_of_labelled"][0]) == {"max_devi_f", "max_devi_fm", "devi_e"}
        assert s["rmse_on_new_labels"]["forces"] > 0 and s["rmse_on_new_labels"]["torques"] >= 0
        label = read_frames(tmp_path / "al" / f"iter_{i:03d}" / "labels")[0]
        assert label.labeller["code"] == "gpaw" and label.torque_labels == "transverse"
        assert collinear_axis(label.spins)[2] < 1e-12 and len(label) == 4  # a canted sample's collinear projection
    inputs = json.loads((tmp_path / "al" / "iter_001" / "members" / "member_0" / "input.json").read_text())
    assert inputs["relative_energy"] == ["seed", str(tmp_path / "al" / "iter_000" / "labels")]


def test_accuracy_of_frames_from_another_code(tmp_path):
    """`ase-deepspin test` on labels of another code: energies compared after the system's constant, torques
    labelled across S only reported as that part alone."""
    from ase_deepspin.training.evaluate import accuracy_report, predict
    from ase_deepspin import DeepSpinCalculator

    frames = [dataclasses.replace(f, energy=f.energy + 50.0) for f in labelled_frames(3)]
    write_deepmd_npy(tmp_path / "other", frames, ["Ni", "O"])
    calc = DeepSpinCalculator("nio")
    report = accuracy_report("nio", [str(tmp_path / "other")], plot=None, calc=calc, relative_energy=["other"])
    assert "across S" in report and "along S" not in report
    pairs = predict(calc, read_frames(tmp_path / "other"), ("energy", "torques"), relative_energy=["other"])
    reference = predict(calc, read_frames(NIO_DATA / "data_0")[:3], ("energy", "torques"))
    residual = reference["energy"][0] - reference["energy"][1]
    assert np.allclose(pairs["energy"][0] - pairs["energy"][1], residual - residual.mean(), atol=1e-12)
    assert np.allclose(np.sort(pairs["torques_transverse"][0]), np.sort(reference["torques_transverse"][0]))
