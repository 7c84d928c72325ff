"""R3c BiFeO3 builders, polarization from Born charges, and the switching example end to end."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import spglib
from ase.neighborlist import neighbor_list

from ase_deepspin.build import (
    BIFEO3_R3C_298K,
    NOMINAL_CHARGES,
    bifeo3_r3c,
    bifeo3_switching_endpoints,
    inverted_variant,
    polarization,
)

pytestmark = pytest.mark.filterwarnings("ignore:Set OLD_ERROR_HANDLING:DeprecationWarning")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bifeo3_switching.py"


def _spacegroup(atoms):
    return spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers),
                                       symprec=1e-3).number


def _midpoint(plus, minus):
    reference = plus.copy()
    reference.positions = 0.5 * (plus.positions + minus.positions)
    return reference


def test_r3c_structure_and_g_type_order():
    atoms = bifeo3_r3c(hexagonal=True)
    assert atoms.get_chemical_formula() == "Bi6Fe6O18"
    np.testing.assert_allclose(atoms.cell.cellpar(), BIFEO3_R3C_298K["cellpar"], atol=1e-10)
    assert _spacegroup(atoms) == 161
    d = atoms.get_all_distances(mic=True)
    fe, o = np.flatnonzero(atoms.numbers == 26), np.flatnonzero(atoms.numbers == 8)
    # FeO6 octahedra with three short and three long bonds (1.95 and 2.11 Å reported at room temperature)
    bonds = np.sort(d[np.ix_(fe, o)], axis=1)[:, :6]
    np.testing.assert_allclose(bonds[:, :3], 1.953, atol=2e-3)
    np.testing.assert_allclose(bonds[:, 3:], 2.105, atol=2e-3)
    spins = atoms.get_initial_magnetic_moments()
    assert not spins[atoms.numbers != 26].any()
    np.testing.assert_allclose(np.linalg.norm(spins[fe], axis=1), 4.1)
    primitive = bifeo3_r3c()
    assert len(primitive) == 10 and _spacegroup(primitive) == 161
    for cell in (atoms, primitive):  # G-type: each Fe antiparallel to its six nearest Fe neighbours (3.96 Å)
        i, j = neighbor_list("ij", cell, 4.2)
        fe_pair = (cell.numbers[i] == 26) & (cell.numbers[j] == 26)
        i, j = i[fe_pair], j[fe_pair]
        assert np.all(np.bincount(i, minlength=len(cell))[cell.numbers == 26] == 6)
        s = cell.get_initial_magnetic_moments()
        assert np.all(np.einsum("ij,ij->i", s[i], s[j]) < 0)


def test_switching_endpoints_share_spins_and_reverse_polarization():
    plus, minus = bifeo3_switching_endpoints(hexagonal=True)
    assert np.array_equal(plus.numbers, minus.numbers)
    assert np.array_equal(plus.get_initial_magnetic_moments(), minus.get_initial_magnetic_moments())
    reference = _midpoint(plus, minus)
    assert _spacegroup(minus) == 161 and _spacegroup(reference) == 167  # R3c twins about an R-3c midpoint
    # −P is an isometric image of +P (same interatomic distances)
    np.testing.assert_allclose(np.sort(plus.get_all_distances(mic=True).ravel()),
                               np.sort(minus.get_all_distances(mic=True).ravel()), atol=1e-8)
    p_plus, p_minus = polarization(plus, reference), polarization(minus, reference)
    np.testing.assert_allclose(p_plus, -p_minus, atol=1e-9)
    np.testing.assert_allclose(p_plus[:2], 0.0, atol=1e-9)  # along c = [111]_pc
    # nominal charges by hand: (e/V) Σ Z Δz with e/Å² = 1602.18 μC/cm²
    dz = plus.positions[:, 2] - reference.positions[:, 2]
    by_hand = 1602.176634 * sum(NOMINAL_CHARGES[s] * z for s, z in zip(plus.get_chemical_symbols(), dz)) / plus.get_volume()
    assert p_plus[2] == pytest.approx(by_hand, rel=1e-12) and p_plus[2] > 50
    # charge neutrality makes P independent of a rigid translation; tensors per element act as scalars
    shifted = plus.copy()
    shifted.positions += [0.3, -0.2, 0.7]
    np.testing.assert_allclose(polarization(shifted, reference), p_plus, atol=1e-9)
    tensors = {el: q * np.eye(3) for el, q in NOMINAL_CHARGES.items()}
    np.testing.assert_allclose(polarization(plus, reference, tensors), p_plus, atol=1e-12)


def test_polarization_and_inversion_bad_input():
    plus, minus = bifeo3_switching_endpoints()
    reference = _midpoint(plus, minus)
    with pytest.raises(ValueError, match="do not sum to zero"):
        polarization(plus, reference, {"Bi": 3.0, "Fe": 3.0, "O": -1.0})
    with pytest.raises(ValueError, match=r"no Born charge for elements \['O'\]"):
        polarization(plus, reference, {"Bi": 3.0, "Fe": 3.0})
    with pytest.raises(ValueError, match="same atoms in the same order"):
        polarization(plus, reference[:-1])
    with pytest.raises(ValueError, match="not close to centrosymmetric"):
        inverted_variant(plus, plus.positions[0] + [0.0, 0.0, 2.0])


def _load_example():
    spec = importlib.util.spec_from_file_location("bifeo3_switching", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_switching_example_with_the_analytic_model(tmp_path):
    """The toy model's barrier is known (0.25 eV/f.u. here); the profile is symmetric in P. The band starts
    bowed off the straight minimum-energy path, so FIRE has to relax it back."""
    summary = _load_example().main(["analytic", "--images", "7", "--toy-barrier", "0.25", "--out", str(tmp_path)])
    assert summary["converged"] and summary["bow_A"] > 0 and summary["neb_steps"] > 10
    assert abs(summary["barrier_eV_per_fu"] - 0.25) < 1e-4
    assert summary["saddle_image"] == 3
    p = np.array(summary["P_uC_per_cm2"])
    e = np.array(summary["energy_meV_per_fu"])
    np.testing.assert_allclose(p, -p[::-1], atol=1e-6)
    np.testing.assert_allclose(e, e[::-1], atol=1e-3)
    assert abs(p[3]) < 1e-6 and np.all(np.diff(p) < 0)  # |P| falls to zero, then grows reversed
    for name in ("energy_vs_P.png", "profile.png", "neb.traj", "profile.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "profile.json").read_text())["model"] == "analytic"


def test_switching_example_takes_a_model_file(tmp_path):
    """A (random, untrained) Bi–Fe–O DeepSPIN model file drives the same script end to end."""
    from ase_deepspin import DeepSpinModel, ModelConfig, save_model

    model = DeepSpinModel(ModelConfig(type_map=["Bi", "Fe", "O"], virtual_scale=[0.0, 0.3, 0.0], rcut=4.0,
                                      rcut_smth=3.0, sel=[40, 40, 80], neuron=[4, 8], axis_neuron=2,
                                      fitting_neuron=[8], seed=2))
    save_model(model, tmp_path / "bfo.pt")
    summary = _load_example().main([str(tmp_path / "bfo.pt"), "--images", "5", "--steps", "2", "--relax-spins",
                                    "--out", str(tmp_path / "run")])
    assert len(summary["energy_meV_per_fu"]) == 5 and np.isfinite(summary["energy_meV_per_fu"]).all()
    assert (tmp_path / "run" / "energy_vs_P.png").stat().st_size > 0


def test_idpp_images_carry_the_shared_spins():
    from ase_deepspin.analysis.neb import make_images

    plus, minus = bifeo3_switching_endpoints()
    images = make_images(plus, minus, 5, method="idpp", mic=True)
    for image in images:
        np.testing.assert_array_equal(image.get_initial_magnetic_moments(), plus.get_initial_magnetic_moments())
    np.testing.assert_array_equal(images[-1].positions, minus.positions)
