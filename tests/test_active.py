"""The active-learning loop (ase_deepspin.active) end to end, with an analytic spin-lattice oracle.

Oracle: bcc Fe, Bethe–Slater exchange between the spins plus a Morse lattice (ase.calculators.morse).
From 20 labelled frames near the ferromagnetic ground state, iterations explore at rising
temperatures and spin cantings with a committee of small models, label the candidates with the oracle
and retrain. (The issue's ≥ 3× fall of the error after three iterations is not reached with CI-sized
training; see the closing note of issue 21.)
"""

import json

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.morse import MorsePotential
from scipy.stats import spearmanr

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.active import ExploreConfig, _label, run_active_learning
from ase_deepspin.data import write_deepmd_npy
from ase_deepspin.dynamics import SpinLatticeDynamics
from ase_deepspin.hamiltonian import BetheSlater, SpinHamiltonian

MOMENT = 2.2  # μB


def oracle():
    # both end within the model's rcut (4 Å): J(r) crosses zero at δ/√γ = 3.3 Å, where it is cut
    return SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(alpha=0.05, gamma=0.235, delta=1.6, cutoff=3.3)},
                           lattice=MorsePotential(epsilon=0.4, r0=2.485, rho0=6.0, rcut1=3.0, rcut2=3.4))


def fe_cell():
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(2)
    atoms.set_initial_magnetic_moments(None)  # ASE's collinear default, replaced by (N, 3) vectors
    atoms.set_initial_magnetic_moments(np.tile([0.0, 0.0, MOMENT], (len(atoms), 1)))
    return atoms


def near_ground_state(n, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = fe_cell()
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        spins = atoms.get_initial_magnetic_moments() + rng.normal(scale=0.1, size=(len(atoms), 3))
        atoms.set_initial_magnetic_moments(MOMENT * spins / np.linalg.norm(spins, axis=1, keepdims=True))
        frames.append(_label(atoms, oracle()))
    return frames


def hot_frames(temperature, n, seed=1):
    """Oracle-driven spin-lattice dynamics at ``temperature``: n labelled snapshots."""
    from ase.md.velocitydistribution import thermalize_momenta

    atoms = fe_cell()
    atoms.calc = oracle()
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn = SpinLatticeDynamics(atoms, dt_fs=1.0, alpha=0.1, temperature_K=temperature, lattice_friction_per_fs=0.01,
                              rng=np.random.default_rng(seed))
    frames = []
    for _ in range(n):
        dyn.run(10)
        frames.append(_label(atoms, oracle()))
    return frames


TRAINING = {
    "model": {"type_map": ["Fe"],
              "descriptor": {"sel": [30, 30], "rcut_smth": 3.0, "rcut": 4.0, "neuron": [6, 12], "axis_neuron": 4},
              "fitting_net": {"neuron": [16, 16]}, "spin": {"use_spin": [True], "virtual_scale": [0.3]}},
    "learning_rate": {"start_lr": 0.005, "stop_lr": 0.0005, "decay_steps": 80},
    "training": {"numb_steps": 400, "n_validation": 2, "disp_freq": 400, "save_freq": 400},
}


def test_active_learning_loop(tmp_path):
    """Two iterations end to end: samples classified, candidates labelled by the oracle and written as an npy
    system the trainer reads, the committee retrained on them, a finished loop read back on a rerun; and
    the first committee's max force deviation ranks its true per-frame force errors on oracle frames at
    the highest temperature (Spearman ρ ≥ 0.6)."""
    from ase_deepspin.data import read_frames

    write_deepmd_npy(tmp_path / "data", near_ground_state(20), ["Fe"])
    training = {**TRAINING, "training": {**TRAINING["training"],
                                         "training_data": {"systems": [str(tmp_path / "data")], "batch_size": 2}}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(training))
    cfg = ExploreConfig(training=str(tmp_path / "train.yaml"), systems=[str(tmp_path / "data")], members=2,
                        iterations=2, temperatures_K=[100.0, 600.0], canting_rad=[0.2, 0.8], starts=3, steps=30,
                        sample_every=6, trust_f=(0.02, 5.0), trust_fm=(0.01, 5.0), max_labels=8)
    summaries = run_active_learning(cfg, oracle(), tmp_path / "al")
    assert [s["samples"] for s in summaries] == [15, 15]
    for s in summaries:
        assert s["accurate_fraction"] + s["candidate_fraction"] + s["failed_fraction"] == pytest.approx(1.0)
        assert s["labelled"] == min(8, round(15 * s["candidate_fraction"]))
    labels = read_frames(tmp_path / "al" / "iter_000" / "labels")
    assert len(labels) == summaries[0]["labelled"]
    again = _label(labels[0].to_atoms(), oracle())
    assert np.allclose(again.torques, labels[0].torques, atol=1e-12) and again.energy == pytest.approx(labels[0].energy)
    inputs = json.loads((tmp_path / "al" / "iter_001" / "members" / "member_0" / "input.json").read_text())
    assert str(tmp_path / "al" / "iter_000" / "labels") in inputs["systems"]  # retrained on the new labels
    assert (tmp_path / "al" / "active_learning.png").is_file()
    assert run_active_learning(cfg, oracle(), tmp_path / "al") == summaries  # finished: read back, not rerun

    first = sorted(str(p) for p in (tmp_path / "al" / "iter_000" / "members").glob("member_*/model.pt"))
    calc = DeepSpinCalculator(first)
    deviation, error = {"f": [], "fm": []}, {"f": [], "fm": []}
    for f in hot_frames(600.0, 12):
        atoms = f.to_atoms()
        atoms.calc = calc
        devi = calc.get_property("model_deviation", atoms)
        deviation["f"].append(devi["max_devi_f"])
        deviation["fm"].append(devi["max_devi_fm"])
        error["f"].append(np.abs(atoms.get_forces() - f.forces).max())
        error["fm"].append(np.abs(calc.get_magnetic_torques(atoms) - f.torques).max())
    rho = {key: spearmanr(deviation[key], error[key]).statistic for key in deviation}
    assert rho["f"] >= 0.6, rho  # the issue's criterion; the torques' ρ (0.43 here) is reported, not required
