"""The shipped models (NiO, FCC Fe) on the DeltaSpin frames their training runs held out."""

import numpy as np
import pytest

from ase_deepspin import DeepSpinCalculator, load_model
from ase_deepspin.io.model_file import resolve_model_path
from ase_deepspin.io.frames import read_frames, split_frames
from ase_deepspin.training.evaluate import error_table, predict
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
    assert load_model(resolve_model_path("nio")).config.type_map == ["Ni", "O"] == load_model("nio").config.type_map
    assert resolve_model_path("nio").stat().st_size < 10 * 2**20


@needs_nio_data
def test_shipped_model_accuracy_on_held_out_frames():
    held_out = split_frames(read_frames(NIO_DATA), N_VALIDATION, SPLIT_SEED)[1]
    assert len(held_out) == N_VALIDATION
    pairs = predict(DeepSpinCalculator("nio"), held_out)
    table = error_table(pairs)
    for quantity, row in table.items():  # energy, forces, torques and the torques' two parts
        assert row["rmse"] <= MAX_FRACTION_OF_TRIVIAL * row["null"], (quantity, row)


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


FE_DATA = NIO_DATA.parent / "fe-deltaspin"
# examples/fe_train.yaml holds these out whole (near equilibrium; the vacancy trajectory's end)
FE_HELD_OUT = {"near equilibrium": ("FCC_Fe_iter-2", None), "vacancy": ("FCC_Fe_defect_iter-1", 70)}
# The bars, as fractions of predicting zero forces and torques (near equilibrium 297 meV/Å and 31 meV/μB;
# vacancy 741 meV/Å and 35 meV/μB): a model worth shipping learns most of the forces and at least half of
# the torques, along S and across S, on systems it never saw. The vacancy frames are collinear, so their
# transverse labels are ~0.5 meV/μB (no spin-orbit coupling, DFT noise): no fraction of that is a fair bar, and
# it is not tested there (a model of spin invariants gives no transverse torque on a collinear state at all).
FE_PARTS = ("forces", "torques", "torques_longitudinal", "torques_transverse")
FE_MAX_FRACTION = {"near equilibrium": dict.fromkeys(FE_PARTS, 0.6) | {"forces": 0.4},
                   "vacancy": dict.fromkeys(FE_PARTS[:3], 0.7) | {"forces": 0.4}}
# Energies: the held-out systems' labels spread by only 2 (near equilibrium) and 9 meV/atom about their own
# means, so the bar is absolute: well below the 23 meV/atom of the NiO recipe applied to Fe unchanged (issue 23).
FE_MAX_ENERGY_RMSE = 10.0  # meV/atom


def test_shipped_fe_model_resolves_by_name():
    model = load_model(resolve_model_path("fe"))
    assert model.config.type_map == ["Fe"] and resolve_model_path("fe").stat().st_size < 10 * 2**20
    (low, high), = model.config.data_ranges["moment"]
    assert low < 0.2 and high > 1.5  # trained on the vacancy's small moments: lengths are determined


@pytest.mark.skipif(not FE_DATA.is_dir(), reason="../shared/data/fe-deltaspin not present")
@pytest.mark.parametrize("kind", list(FE_HELD_OUT))
def test_shipped_fe_model_on_held_out_systems(kind):
    system, first = FE_HELD_OUT[kind]
    frames = read_frames(FE_DATA / system)[first or 0:]
    pairs = predict(DeepSpinCalculator("fe"), frames)
    table = error_table(pairs)
    for quantity, fraction in FE_MAX_FRACTION[kind].items():
        assert table[quantity]["rmse"] <= fraction * table[quantity]["null"], (kind, quantity, table[quantity])
    assert table["energy"]["rmse"] <= FE_MAX_ENERGY_RMSE, (kind, table["energy"])


def test_shipped_fe_model_relaxes_tilted_afmd_spins_and_perturbed_positions_back_to_afmd():
    """The DeepSPIN authors' 4,000-atom start in a 72-atom cell (positions perturbed by 0.115 Å, each AFMD
    spin tilted by 0-90°): DFT's ground state must be where a coupled relaxation with free lengths ends, at
    the energy of the same positions relaxed from perfect AFMD spins."""
    from ase_deepspin.build import afmd_order, fcc_fe_afmd, tilt_spins
    from ase_deepspin.dynamics import SpinLBFGS

    calc = DeepSpinCalculator("fe", compress=True)
    bounds = tuple(calc.model.config.data_ranges["moment"][0])
    rng = np.random.default_rng(5)
    displacements = rng.normal(scale=0.115, size=(72, 3))
    relaxed = []
    for tilt in (0.0, 90.0):
        atoms = fcc_fe_afmd(repeat=(3, 3, 2))
        atoms.positions += displacements
        atoms.set_initial_magnetic_moments(tilt_spins(atoms.get_initial_magnetic_moments(), tilt, rng))
        atoms.calc = calc
        assert SpinLBFGS(atoms, relax="all", moment_bounds=bounds, logfile=None).run(fmax=0.05, tmax=0.01,
                                                                                        steps=400)
        relaxed.append(atoms)
    lengths = np.linalg.norm(relaxed[1].get_initial_magnetic_moments(), axis=1)
    assert afmd_order(relaxed[1]) > 0.99 * lengths.mean()
    energies = [a.get_potential_energy() / len(a) for a in relaxed]
    assert energies[1] < energies[0] + 1e-3, energies  # eV/atom: no higher than relaxed AFMD


@pytest.mark.parametrize("a", [4.186, 4.17])  # the data's cell; experiment
def test_shipped_nio_model_holds_type_ii_order(a):
    """Type-II order, which the NiO data were built around, is a minimum of the shipped model's spin energy in
    a 64-atom cube (pairs the 32-atom data cells hold only as images of one atom are free there), and spins
    relaxed from random 0.3 rad cantings return to it."""
    from ase_deepspin.analysis.stability import spin_stability
    from ase_deepspin.build import nio_afm
    from ase_deepspin.dynamics.minimize import relax_spins
    from ase_deepspin.spins import unit_vectors

    atoms = nio_afm(a=a, moment=1.2735, cubic=True)
    atoms.calc = DeepSpinCalculator("nio")
    stability = spin_stability(atoms)
    assert stability.is_minimum(1e-6), stability.eigenvalues[:6]
    spins = atoms.get_initial_magnetic_moments()
    magnetic = np.flatnonzero(np.linalg.norm(spins, axis=1) > 0)
    reference, lengths = unit_vectors(spins[magnetic])
    canted = reference + 0.3 * np.random.default_rng(0).normal(size=reference.shape)
    canted /= np.linalg.norm(canted, axis=1, keepdims=True)
    spins[magnetic] = lengths[:, None] * canted
    atoms.set_initial_magnetic_moments(spins)
    assert relax_spins(atoms, tmax=1e-5, steps=3000)
    relaxed, _ = unit_vectors(atoms.get_initial_magnetic_moments()[magnetic])
    staggered = np.sign(reference @ reference[0]) @ relaxed / len(magnetic)  # 1 for type-II along any axis
    assert np.linalg.norm(staggered) > 0.999
