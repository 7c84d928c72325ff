"""Data readers: DeePMD-kit npy systems with spins, extended XYZ round trip, clear errors."""

import shutil

import numpy as np
import pytest

from ase_deepspin.io.frames import read_deepmd_npy, read_extxyz, read_frames, split_frames, write_extxyz
from conftest import NIO_DATA, needs_nio_data

pytestmark = needs_nio_data


def test_reads_both_nio_systems_with_units_and_shapes():
    frames = read_frames(NIO_DATA)
    assert len(frames) == 120
    f = frames[0]
    assert f.positions.shape == f.spins.shape == f.forces.shape == f.torques.shape == (32, 3)
    nickel = f.symbols == "Ni"
    assert nickel.sum() == 16
    assert np.allclose(np.linalg.norm(f.spins[nickel], axis=1), 1.277, atol=0.01)
    assert np.all(f.spins[~nickel] == 0) and np.all(f.torques[~nickel] == 0)


def test_extxyz_round_trip(tmp_path):
    frames = read_deepmd_npy(NIO_DATA / "data_1")[:4]
    write_extxyz(tmp_path / "nio.xyz", frames)
    back = read_extxyz(tmp_path / "nio.xyz")
    assert len(back) == 4
    for a, b in zip(frames, back):
        assert list(a.symbols) == list(b.symbols)
        for key in ("positions", "cell", "spins", "forces", "torques"):
            assert np.allclose(getattr(a, key), getattr(b, key), rtol=0, atol=1e-7), key
        assert abs(a.energy - b.energy) < 1e-7


def test_split_is_deterministic_and_disjoint():
    frames = read_frames(NIO_DATA)
    train, valid = split_frames(frames, 20, seed=4)
    train2, valid2 = split_frames(frames, 20, seed=4)
    assert [f.source for f in valid] == [f.source for f in valid2]
    assert len(valid) == 20 and len(train) == 100
    assert not {f.source for f in train} & {f.source for f in valid}
    assert {f.source for f in valid} != {f.source for f in split_frames(frames, 20, seed=5)[1]}


@pytest.fixture
def system_copy(tmp_path):
    target = tmp_path / "sys"
    shutil.copytree(NIO_DATA / "data_0", target)
    return target


def test_missing_file(system_copy):
    (system_copy / "set.000" / "spin.npy").unlink()
    with pytest.raises(FileNotFoundError, match="spin.npy is missing"):
        read_deepmd_npy(system_copy)


def test_shape_mismatch(system_copy):
    force = np.load(system_copy / "set.000" / "force.npy")
    np.save(system_copy / "set.000" / "force.npy", force[:, :-3])
    with pytest.raises(ValueError, match="force.npy: expected 96 values"):
        read_deepmd_npy(system_copy)


def test_frame_count_mismatch(system_copy):
    energy = np.load(system_copy / "set.000" / "energy.npy")
    np.save(system_copy / "set.000" / "energy.npy", energy[:-1])
    with pytest.raises(ValueError, match="energy.npy has 59 frames"):
        read_deepmd_npy(system_copy)


def test_nan_label(system_copy):
    torque = np.load(system_copy / "set.000" / "force_mag.npy")
    torque[3, 5] = np.nan
    np.save(system_copy / "set.000" / "force_mag.npy", torque)
    with pytest.raises(ValueError, match="force_mag contains NaN"):
        read_deepmd_npy(system_copy)


def test_not_a_system(tmp_path):
    with pytest.raises(FileNotFoundError, match="type.raw"):
        read_deepmd_npy(tmp_path)
