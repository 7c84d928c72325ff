"""Time reversal: E(R, S) = E(R, −S) exactly for symmetrised models, and what follows from it."""

import json

import numpy as np
import pytest
import torch

from ase_deepspin import DeepSpinCalculator, compress_model, load_model, save_model
from ase_deepspin.build import nio_afm
from ase_deepspin.io.deepmd import DeepMDFormatError, write_deepmd
from ase_deepspin.io.model_file import resolve_model_path
from conftest import small_model, with_random_baseline

WALL = {"type": "zbl", "charges": [28, 8], "r_inner": [[1.0, 1.0], [1.0, 1.0]], "r_outer": [[1.6, 1.7], [1.7, 1.6]]}


VARIANTS = ["plain", "baseline+wall", "compressed", "float32", "shipped", "shipped compressed"]


def variant(name):
    """Symmetrised models: random (plain, with baseline and wall, compressed with fused kernels, float32)
    and the shipped trained one, plain and compressed."""
    if name.startswith("shipped"):
        model = load_model(resolve_model_path("nio"))
        return (compress_model(model) if name.endswith("compressed") else model), "float64"
    full = with_random_baseline(small_model(spin_baseline={"n_basis": 4, "onsite_order": 2}, short_range=WALL))
    return {"plain": (small_model(), "float64"), "baseline+wall": (full, "float64"),
            "compressed": (compress_model(full), "float64"), "float32": (compress_model(full), "float32")}[name]


def reversal_pair(calc, atoms):
    """(energy, forces, stress, torques) at S and at −S."""
    out = []
    for sign in (1, -1):
        trial = atoms.copy()
        trial.set_initial_magnetic_moments(sign * atoms.get_initial_magnetic_moments())
        trial.calc = calc
        out.append((trial.get_potential_energy(), trial.get_forces(), trial.get_stress(),
                    trial.calc.get_property("magnetic_torques", trial)))
    return out


@pytest.mark.parametrize("name", VARIANTS)
def test_reversing_every_spin_leaves_energy_forces_stress_and_flips_torques(name, nio):
    model, dtype = variant(name)
    assert model.config.time_reversal
    (e1, f1, s1, w1), (e2, f2, s2, w2) = reversal_pair(DeepSpinCalculator(model, dtype=dtype), nio)
    round_off = 1e-5 if dtype == "float32" else 1e-12
    assert abs(e1 - e2) <= round_off * abs(e1)
    assert np.abs(f1 - f2).max() <= round_off * np.abs(f1).max()
    assert np.abs(s1 - s2).max() <= round_off * np.abs(s1).max()
    assert np.abs(w1 + w2).max() <= round_off * np.abs(w1).max()
    assert np.abs(w1).max() > 1e-3 and np.abs(f1).max() > 1e-3  # the test has something to compare


def test_unsymmetrised_model_is_not_even_in_the_spins(nio):
    # the control: the same network without the symmetrisation breaks time reversal
    (e1, f1, _, w1), (e2, f2, _, w2) = reversal_pair(DeepSpinCalculator(small_model(time_reversal=False)), nio)
    assert abs(e1 - e2) > 1e-8 and np.abs(f1 - f2).max() > 1e-6


@pytest.mark.parametrize("model_name", ["random", "shipped"])
def test_ideal_antiferromagnetic_nio_has_no_forces(model_name):
    # every Ni and O of ideal AFM-II NiO is an inversion centre up to time reversal: E(PR, S) = E(R, −S)
    atoms = nio_afm(repeat=(2, 2, 2))
    model = small_model() if model_name == "random" else "nio"
    atoms.calc = DeepSpinCalculator(model)
    forces = atoms.get_forces()
    scale = np.abs(DeepSpinCalculator(model).get_forces(rattled(atoms))).max()
    assert np.abs(forces).max() <= 1e-11 * max(scale, 1.0), (np.abs(forces).max(), scale)


def rattled(atoms):
    out = atoms.copy()
    out.rattle(0.05, seed=1)
    return out


def test_shipped_model_is_symmetrised():
    model = load_model(resolve_model_path("nio"))
    assert model.config.time_reversal and model.config.short_range is not None


def test_old_model_files_load_unsymmetrised(nio, tmp_path):
    # files of format version <= 3 predate time reversal: their networks must evaluate as trained
    model = small_model(time_reversal=False)
    save_model(model, tmp_path / "new.pt")
    blob = torch.load(tmp_path / "new.pt", weights_only=True)
    config = json.loads(blob["config"])
    del config["time_reversal"], config["short_range"]
    torch.save({"format": blob["format"], "version": 3, "config": json.dumps(config), "state_dict": blob["state_dict"]},
               tmp_path / "old.pt")  # the layout of format 3: no provenance, no checksum
    old = load_model(tmp_path / "old.pt")
    assert not old.config.time_reversal
    nio.calc = DeepSpinCalculator(old)
    assert nio.get_potential_energy() == pytest.approx(DeepSpinCalculator(model).get_potential_energy(nio), abs=1e-12)


def test_symmetrised_model_round_trips_through_its_file(nio, tmp_path):
    model = with_random_baseline(small_model(spin_baseline={"n_basis": 4, "onsite_order": 2}, short_range=WALL))
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config == model.config
    assert DeepSpinCalculator(loaded).get_potential_energy(nio) == DeepSpinCalculator(model).get_potential_energy(nio)


def test_deepmd_export_refuses_a_symmetrised_model(tmp_path):
    with pytest.raises(DeepMDFormatError, match="time reversal"):
        write_deepmd(small_model(), tmp_path / "m.dp")
