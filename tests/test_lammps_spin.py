"""LAMMPS atom_style spin data files and the SPIN package's magnetic-force convention."""

import numpy as np
import pytest
from conftest import SHARED_DATA

from ase_deepspin.io.frames import read_lammps_spin
from ase_deepspin.units import HBAR_EV_PS
from ase_deepspin.io.lammps import (
    fm_from_torques,
    torques_from_fm,
    write_spin_data,
)

GB = SHARED_DATA / "nio-gb-sigma5" / "init.data"


def test_data_file_round_trip_in_a_triclinic_cell(tmp_path, nio):
    prism = write_spin_data(tmp_path / "nio.data", nio, ["Ni", "O"])
    back = read_lammps_spin(tmp_path / "nio.data", ["Ni", "O"])
    assert back.get_chemical_symbols() == nio.get_chemical_symbols()
    # LAMMPS's frame is a rotation of ASE's: lengths, angles, moments and relative geometry survive
    np.testing.assert_allclose(back.cell.cellpar(), nio.cell.cellpar(), atol=1e-10)
    np.testing.assert_allclose(prism.vector_to_ase(back.get_initial_magnetic_moments()),
                               nio.get_initial_magnetic_moments(), atol=1e-12)
    d_back = back.get_distances(0, range(len(nio)), mic=True)
    np.testing.assert_allclose(d_back, nio.get_distances(0, range(len(nio)), mic=True), atol=1e-10)


def test_spins_of_non_magnetic_elements_are_dropped_on_request(tmp_path, nio):
    """atom_style spin gives every atom a spin; ``magnetic`` keeps only those of the named elements."""
    spins = nio.get_initial_magnetic_moments()
    is_o = np.array(nio.get_chemical_symbols()) == "O"
    spins[is_o] = [0.0, 0.3, 0.4]
    nio.set_initial_magnetic_moments(spins)
    write_spin_data(tmp_path / "nio.data", nio, ["Ni", "O"])
    kept = np.linalg.norm(read_lammps_spin(tmp_path / "nio.data", ["Ni", "O"]).get_initial_magnetic_moments(), axis=1)
    np.testing.assert_allclose(kept[is_o], 0.5)
    only_ni = read_lammps_spin(tmp_path / "nio.data", ["Ni", "O"], magnetic=["Ni"]).get_initial_magnetic_moments()
    assert not only_ni[is_o].any()
    np.testing.assert_allclose(np.linalg.norm(only_ni[~is_o], axis=1), np.linalg.norm(spins[~is_o], axis=1))
    with pytest.raises(ValueError, match="Fe"):
        read_lammps_spin(tmp_path / "nio.data", ["Ni", "O"], magnetic=["Fe"])


def test_fm_convention():
    """fm = −(1/ħ) ∂E/∂ŝ with S = |S| ŝ, i.e. (|S|/ħ) ω; zero moments give zero torques back."""
    rng = np.random.default_rng(0)
    moments = rng.normal(size=(5, 3))
    moments[2] = 0.0
    torques = rng.normal(size=(5, 3))
    torques[2] = 0.0
    fm = fm_from_torques(torques, moments)
    np.testing.assert_allclose(fm[0], torques[0] * np.linalg.norm(moments[0]) / 6.5821191e-4)
    np.testing.assert_allclose(torques_from_fm(fm, moments), torques, atol=1e-15)
    assert HBAR_EV_PS == pytest.approx(6.582119569e-4, rel=1e-7)


@pytest.mark.skipif(not GB.is_file(), reason="../shared/data/nio-gb-sigma5 not present")
def test_reads_the_grain_boundary():
    atoms = read_lammps_spin(GB, ["Ni", "O"], magnetic=["Ni"])
    assert len(atoms) == 11520 and atoms.cell.orthorhombic
    ni = np.array(atoms.get_chemical_symbols()) == "Ni"
    np.testing.assert_allclose(np.linalg.norm(atoms.get_initial_magnetic_moments()[ni], axis=1), 1.2737, atol=1e-4)
    assert not atoms.get_initial_magnetic_moments()[~ni].any()


@pytest.mark.skipif(not GB.is_file(), reason="../shared/data/nio-gb-sigma5 not present")
def test_grain_boundary_of_the_example_has_the_papers_atoms():
    """LAMMPS's `delete_atoms overlap 0.05` of the paper's run leaves 11,328 atoms (SOURCE.md)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("example", Path(__file__).parents[1] / "examples" /
                                                  "lammps_deepspin_gb.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    atoms = example.grain_boundary(GB)
    assert len(atoms) == 11328
    assert not np.any(atoms.get_initial_magnetic_moments()[np.array(atoms.get_chemical_symbols()) == "O"])
