"""The shipped NiO model on the 20 DeltaSpin frames its training run held out."""

import numpy as np

from ase_deepspin import DeepSpinCalculator, load_model
from ase_deepspin.model.io import resolve_model_path
from ase_deepspin.data import read_frames, split_frames
from ase_deepspin.evaluate import error_table, predict
from conftest import NIO_DATA, needs_nio_data

# examples/nio_train.yaml: n_validation 20, split_seed 0 over ../shared/data/nio-deltaspin
N_VALIDATION, SPLIT_SEED = 20, 0
# The bar, as a fraction of the RMSE of predicting the mean energy and zero forces and torques
# (about 0.5 meV/atom, 12 meV/Å and 12 meV/μB on these frames): any model worth shipping learns
# most of each quantity, whatever its training run reached.
MAX_FRACTION_OF_TRIVIAL = 0.3


def test_shipped_model_resolves_by_name_and_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("nio") == resolve_model_path("nio.pt")
    assert load_model(resolve_model_path("nio")).config.type_map == ["Ni", "O"]
    assert resolve_model_path("nio").stat().st_size < 10 * 2**20


@needs_nio_data
def test_shipped_model_accuracy_on_held_out_frames():
    held_out = split_frames(read_frames(NIO_DATA), N_VALIDATION, SPLIT_SEED)[1]
    assert len(held_out) == N_VALIDATION
    pairs = predict(DeepSpinCalculator("nio"), held_out)
    table = error_table(pairs)
    trivial = error_table({"energy": (pairs["energy"][0], np.full_like(pairs["energy"][0], pairs["energy"][0].mean())),
                           "forces": (pairs["forces"][0], 0.0 * pairs["forces"][0]),
                           "torques": (pairs["torques"][0], 0.0 * pairs["torques"][0])})
    for quantity in table:
        assert table[quantity]["rmse"] <= MAX_FRACTION_OF_TRIVIAL * trivial[quantity]["rmse"], \
            (quantity, table[quantity], trivial[quantity])


def test_readme_main_job_runs():
    """examples/quickstart.py, the README's main job, prints finite energy, force and torque."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"^(energy|max \|force\||max \|torque\|)\s+(\S+)", out, flags=re.MULTILINE))
    assert set(found) == {"energy", "max |force|", "max |torque|"}
    assert all(np.isfinite(float(v)) for v in found.values())
