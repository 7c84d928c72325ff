"""LAMMPS itself (DeePMD-kit's ``pair_style deepspin``) running this package's TorchScript export, against
DeepSpinCalculator, under ``mpirun -np 1`` and ``-np 2``.

Runs where examples/setup_lammps_deepspin.sh has built the route (``.lammps-deepspin/`` or the variables it
prints; .ci/run builds it). LAMMPS reports fm = (|S|/ħ) ω and rotates triclinic cells into its own frame;
both are undone by :mod:`ase_deepspin.io.lammps`.
"""

import numpy as np
import pytest
from conftest import invariant_model, needs_nio_data, with_random_baseline
from test_deepmd_convert import nio_frames
from test_torchscript import full_model

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.io.lammps import (
    deepspin_input,
    lammps_route,
    printed_value,
    printed_values,
    read_deepspin_dump,
    run_lammps,
    stress_from_pressure,
    write_spin_data,
)
from ase_deepspin.io import load_model
from ase_deepspin.io.torchscript import write_lammps_model

ROUTE = lammps_route()
pytestmark = pytest.mark.skipif(ROUTE is None, reason="LAMMPS + pair_style deepspin not built "
                                "(bash examples/setup_lammps_deepspin.sh)")


def relative(a, b) -> float:
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def lammps_vs_calculator(atoms, model, workdir, nprocs, min_steps=0):
    """Relative differences of E, F, ω between LAMMPS and the calculator; after ``min_steps`` of
    ``min_style spin/lbfgs`` also the energy drop and the relaxed state's energy and torques."""
    eta_s = max(model.config.virtual_scale) * float(np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1).max())
    prism = write_spin_data(workdir / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, workdir / "model.pth")
    text = deepspin_input("system.data", "model.pth", ROUTE["plugin"], model.config.type_map, skin=eta_s + 0.5,
                          minimize_steps=min_steps)
    output = run_lammps(text, workdir, ROUTE["lmp"], nprocs=nprocs, env=ROUTE["env"])
    got = read_deepspin_dump(workdir / "deepspin.dump", prism)
    atoms.calc = DeepSpinCalculator(model)
    energy = atoms.get_potential_energy()
    stress = stress_from_pressure(printed_values(output, "DEEPSPIN_PRESSURE"), prism)
    result = {"energy": abs(printed_value(output, "DEEPSPIN_ENERGY") - energy) / abs(energy),
              "stress": relative(stress, atoms.get_stress(voigt=False)),
              "forces": relative(got["forces"], atoms.get_forces()),
              "torques": relative(got["torques"], atoms.calc.get_magnetic_torques(atoms))}
    if min_steps:
        relaxed = read_deepspin_dump(workdir / "deepspin.dump.min", prism)
        final = atoms.copy()
        final.set_initial_magnetic_moments(relaxed["moments"])
        final.calc = DeepSpinCalculator(model)
        e_min = printed_value(output, "DEEPSPIN_MIN_ENERGY")
        result.update(drop=energy - e_min, min_energy=abs(e_min - final.get_potential_energy()) / abs(e_min),
                      min_torques=relative(relaxed["torques"], final.calc.get_magnetic_torques(final)))
    return result


@needs_nio_data
@pytest.mark.parametrize("nprocs", [1, 2])
def test_shipped_model_in_lammps_equals_calculator(tmp_path, nprocs):
    """The shipped NiO model on a 32-atom DeltaSpin frame: E, F and fm to 1e-10 relative, and after a
    spin/lbfgs minimisation that lowered the energy the relaxed spins' energy and torques too."""
    result = lammps_vs_calculator(nio_frames(1)[0], load_model("ase_deepspin/pretrained/nio.pt"), tmp_path, nprocs,
                                  min_steps=4)
    for key in ("energy", "forces", "torques", "min_energy", "min_torques"):
        assert result[key] < 1e-10, (key, result[key])
    assert result["drop"] > 0


def test_triclinic_cell_with_every_model_term(tmp_path, nio):
    """A triclinic, rattled, spin-canted 16-atom cell (many periodic images per atom across 2 ranks) with a
    symmetrised model carrying baseline and ZBL wall; LAMMPS's pressure tensor is the calculator's stress."""
    result = lammps_vs_calculator(nio, full_model(), tmp_path, nprocs=2)
    for key in ("energy", "forces", "torques", "stress"):
        assert result[key] < 1e-10, (key, result[key])


def test_spin_invariant_model_with_every_term_in_lammps(tmp_path, nio):
    """The descriptor of spin invariants (with baseline and wall) through the same energy core in LAMMPS, 2 ranks."""
    model = with_random_baseline(invariant_model(spin_baseline={"n_basis": 4, "onsite_order": 2},
                                                 short_range=full_model().config.short_range))
    result = lammps_vs_calculator(nio, model, tmp_path, nprocs=2)
    for key in ("energy", "forces", "torques", "stress"):
        assert result[key] < 1e-10, (key, result[key])


@needs_nio_data
def test_too_small_skin_stops_lammps_with_the_rule(tmp_path):
    """LAMMPS's default-like skin (0.3 Å) is below η|S| = 0.76 Å of a pseudo-atom model: the run stops with
    the module's message naming the skin it needs, instead of silently missing pseudo-atoms."""
    atoms = nio_frames(1)[0]
    model = full_model()
    write_spin_data(tmp_path / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, tmp_path / "model.pth")
    text = deepspin_input("system.data", "model.pth", ROUTE["plugin"], model.config.type_map, skin=0.3)
    with pytest.raises(RuntimeError, match="neighbor SKIN bin"):
        run_lammps(text, tmp_path, ROUTE["lmp"], nprocs=1, env=ROUTE["env"])
