"""The LAMMPS route of examples/lammps_deepspin_gb.py on a small NiO cell, under mpirun -np 2.

Runs only where the DeePMD-kit + LAMMPS environment of examples/setup_lammps_deepspin.sh is exported
(ASE_DEEPSPIN_DEEPMD_PYTHON, ASE_DEEPSPIN_LMP, ASE_DEEPSPIN_LMP_LIBRARY_PATH); CI does not install it.
"""

import importlib.util
import os
from pathlib import Path

import pytest
from conftest import needs_nio_data
from test_deepmd_convert import nio_frames, randomized, small_model

EXAMPLE = Path(__file__).parents[1] / "examples" / "lammps_deepspin_gb.py"
configured = all(os.environ.get(k) for k in ("ASE_DEEPSPIN_DEEPMD_PYTHON", "ASE_DEEPSPIN_LMP",
                                              "ASE_DEEPSPIN_LMP_LIBRARY_PATH"))
pytestmark = [pytest.mark.skipif(not configured, reason="LAMMPS + DeePMD-kit route not set up "
                                 "(examples/setup_lammps_deepspin.sh)"), pytest.mark.slow]


def _example():
    spec = importlib.util.spec_from_file_location("lammps_deepspin_gb", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_nio_data
def test_lammps_deepspin_matches_calculator(tmp_path):
    """Energy, forces and magnetic forces (fm -> −∂E/∂S) of pair_style deepspin under mpirun -np 2 agree with
    DeepSpinCalculator to 1e-8 relative, also after a spin/lbfgs minimisation that lowered the energy.
    η |S| = 1.27 Å here, larger than LAMMPS's default skin: the recipe's skin must cover it."""
    example = _example()
    model = randomized(small_model(virtual_scale=[1.0, 0.0], rcut=5.0, rcut_smth=4.0, sel=[50, 50]))
    result = example.compare(nio_frames(1)[0], model, tmp_path, example.lammps_environment(), nprocs=2,
                             min_steps=5)
    for key in ("energy", "forces", "torques", "min_energy", "min_torques"):
        assert result[key] <= 1e-8, (key, result[key])
    assert result["min_energy_drop_eV"] > 0
