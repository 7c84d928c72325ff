"""Committees of models (DeepSpinCalculator([...])): mean properties and DeePMD-kit's model deviation."""

import numpy as np
import pytest
from conftest import NIO_DATA, count_calculations, needs_nio_data, small_model

from ase_deepspin import DeepSpinCalculator


def members(n=3):
    return [small_model(seed=seed) for seed in range(3, 3 + n)]


def separate_results(models, atoms):
    out = []
    for model in models:
        a = atoms.copy()
        a.calc = DeepSpinCalculator(model)
        out.append({"energy": a.get_potential_energy(), "forces": a.get_forces(), "stress": a.get_stress(),
                    "torques": a.calc.get_magnetic_torques(a)})
    return out


def test_identical_members_deviate_by_exactly_zero(nio):
    model = small_model()
    nio.calc = DeepSpinCalculator([model, model, model])
    for name in ("forces_deviation", "torques_deviation"):
        assert not nio.calc.get_property(name, nio).any()
    assert nio.calc.get_property("energy_deviation", nio) == 0.0
    assert all(v == 0.0 for v in nio.calc.get_property("model_deviation", nio).values())
    single = DeepSpinCalculator(model)
    assert nio.get_potential_energy() == pytest.approx(single.get_potential_energy(nio), rel=1e-15)


def test_deviations_equal_those_of_separate_calls(nio):
    """Each quantity as DeePMD-kit's model_devi computes it (numpy std over members) from separate calculators."""
    models = members()
    nio.calc = DeepSpinCalculator(models)
    ref = separate_results(models, nio)
    forces = np.array([r["forces"] for r in ref])
    torques = np.array([r["torques"] for r in ref])
    magnetic = np.linalg.norm(nio.get_initial_magnetic_moments(), axis=1) > 0
    devi_f = np.linalg.norm(np.std(forces, axis=0), axis=-1)
    devi_fm = np.linalg.norm(np.std(torques, axis=0), axis=-1)
    assert np.allclose(nio.get_forces(), forces.mean(0), rtol=0, atol=1e-12)
    assert np.allclose(nio.calc.get_magnetic_torques(nio), torques.mean(0), rtol=0, atol=1e-12)
    assert nio.get_potential_energy() == pytest.approx(np.mean([r["energy"] for r in ref]), rel=1e-14)
    assert np.allclose(nio.calc.get_property("forces_deviation", nio), devi_f, rtol=0, atol=1e-12)
    assert np.allclose(nio.calc.get_property("torques_deviation", nio), np.where(magnetic, devi_fm, 0), rtol=0,
                       atol=1e-12)
    assert devi_f.min() > 1e-4 and devi_fm[magnetic].min() > 1e-4  # members do differ
    devi = nio.calc.get_property("model_deviation", nio)
    assert devi["max_devi_f"] == pytest.approx(devi_f.max(), abs=1e-12)
    assert devi["avg_devi_fm"] == pytest.approx(devi_fm[magnetic].mean(), abs=1e-12)
    assert devi["devi_e"] == pytest.approx(np.std([r["energy"] / len(nio) for r in ref]), abs=1e-12)
    voigt = np.array([r["stress"] for r in ref])
    virial = -voigt[:, [0, 5, 4, 5, 1, 3, 4, 3, 2]] * nio.get_volume() / len(nio)
    assert devi["max_devi_v"] == pytest.approx(np.std(virial, axis=0).max(), abs=1e-12)


def test_committee_members_must_share_the_neighbour_list():
    with pytest.raises(ValueError, match="rcut"):
        DeepSpinCalculator([small_model(), small_model(rcut=4.0, rcut_smth=3.0)])
    with pytest.raises(ValueError, match="at least two"):
        DeepSpinCalculator([small_model()])
    assert "forces_deviation" not in DeepSpinCalculator(small_model()).implemented_properties


def test_compressed_float32_committee(nio):
    nio.calc = DeepSpinCalculator(members(2), dtype="float32", compress=True)
    devi = nio.calc.get_property("model_deviation", nio)
    reference = DeepSpinCalculator(members(2))
    assert devi["max_devi_f"] == pytest.approx(reference.get_property("model_deviation", nio)["max_devi_f"], rel=1e-3)


@needs_nio_data
def test_cli_ensemble_and_model_devi(tmp_path, capsys):
    """`train --ensemble 2` makes two different members; `model-devi` writes DeePMD-kit's spin columns whose
    numbers are the committee calculator's."""
    import yaml

    from ase_deepspin.cli import main
    from ase_deepspin.io.frames import read_frames
    from ase_deepspin.training.evaluate import MODEL_DEVI_COLUMNS

    cfg = {"model": {"type_map": ["Ni", "O"],
                     "descriptor": {"sel": [20, 20], "rcut_smth": 3.0, "rcut": 4.0, "neuron": [4, 8], "axis_neuron": 4},
                     "fitting_net": {"neuron": [8, 8]}, "spin": {"use_spin": [True, False], "virtual_scale": [0.314]}},
           "training": {"training_data": {"systems": [str(NIO_DATA / "data_1")], "batch_size": 2}, "numb_steps": 3,
                        "n_validation": 4, "output_dir": str(tmp_path / "run")}}
    (tmp_path / "in.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "in.yaml"), "--ensemble", "2"]) == 0
    paths = [tmp_path / "run" / f"member_{k}" / "model.pt" for k in range(2)]
    assert all(p.is_file() for p in paths) and "committee of 2 models" in capsys.readouterr().out
    out = tmp_path / "model_devi.out"
    assert main(["model-devi", *map(str, paths), str(NIO_DATA / "data_1"), "-o", str(out)]) == 0
    assert "model deviation" in capsys.readouterr().err  # a run of minutes shows its progress
    header = out.read_text().splitlines()[0].split()
    assert header == ["#", "step", *MODEL_DEVI_COLUMNS]
    table = np.loadtxt(out)
    frames = read_frames(NIO_DATA / "data_1")
    assert table.shape == (len(frames), 1 + len(MODEL_DEVI_COLUMNS))
    atoms = frames[5].to_atoms()
    atoms.calc = DeepSpinCalculator([str(p) for p in paths])
    devi = atoms.calc.get_property("model_deviation", atoms)
    assert table[5, 1 + MODEL_DEVI_COLUMNS.index("max_devi_fm")] == pytest.approx(devi["max_devi_fm"], rel=1e-6)
    assert table[:, 1 + MODEL_DEVI_COLUMNS.index("max_devi_fr")].min() > 0  # different seeds, different members
    assert main(["model-devi", str(paths[0]), str(NIO_DATA / "data_1")]) == 2  # one model is no committee


def test_deviation_log_follows_dynamics_without_extra_calls(nio, tmp_path):
    """Attached to SpinLatticeDynamics, the log reads the committee's results of each step: the calculator
    is called exactly as often as without it, and the logged maxima are those of the steps."""
    from ase_deepspin.training.active import DeviationLog
    from ase_deepspin.dynamics import SpinLatticeDynamics

    calc = DeepSpinCalculator(members(2))
    calls = count_calculations(calc)
    nio.calc = calc
    dyn = SpinLatticeDynamics(nio, dt_fs=0.5)
    dyn.run(1)  # its first step reuses the evaluation of the constructor
    calls["n"] = 0
    dyn.run(2)
    without = calls["n"]
    log = DeviationLog(nio, tmp_path / "devi.log")
    dyn.attach(log, interval=1)
    calls["n"] = 0
    dyn.run(2)
    assert calls["n"] == without
    log.close()
    lines = (tmp_path / "devi.log").read_text().splitlines()
    assert lines[0].split()[:3] == ["call", "max_devi_f", "avg_devi_f"] and len(lines) == 1 + len(log.history)
    assert log.maxima()["max_devi_fm"] > 0
    with pytest.raises(ValueError, match="committee"):
        nio.calc = DeepSpinCalculator(small_model())
        DeviationLog(nio)
