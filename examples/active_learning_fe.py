"""The DeepSPIN paper's active-learning loop (its Fig. 1a) end to end, with an analytic oracle.

    python examples/active_learning_fe.py [--workdir runs/active_fe] [--members 3] [--steps 8000]

Oracle: bcc Fe (16 atoms, |S| = 2.2 μB), Bethe–Slater exchange between the spins plus a Morse lattice
(:class:`ase_deepspin.calculators.hamiltonian.SpinHamiltonian` with ``ase.calculators.morse``): labels in
milliseconds, so the loop's effect can be measured. From 20 labelled frames near the ferromagnetic
ground state, ``ase_deepspin.training.active`` trains a committee of small models (by default with the Heisenberg
spin baseline, random spin rotations and a torque prefactor of 1e5 throughout, each iteration from
scratch: the recipe with the best torques and deviations in docs/guides/active-learning.md), explores with spin-lattice
dynamics at 150, 400 and 1000 K (spin canting 0.1, 0.4, 0.8 rad, strain 1 %), labels up to 20 candidate
frames per iteration with the oracle and retrains. Afterwards every committee (iteration 0, 1, 2 and the
final one, trained on all three iterations' labels) is scored on frames of oracle-driven spin-lattice
dynamics at the highest explored temperature: the RMSE of the committee's mean forces (eV/Å) and
torques (eV/μB), and Spearman's ρ between each frame's max force deviation and its true max force
error; ρ also on frames sampled across the whole explored ladder (equal numbers at each temperature),
the set a deviation has to sort when it picks frames to label. Writes ``<workdir>/scores.json``;
rerunning continues an interrupted loop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.morse import MorsePotential

MOMENT = 2.2  # μB


def oracle():
    """The labelling calculator: J(r) crosses zero at δ/√γ = 3.3 Å, where it is cut; the Morse lattice ends
    by 3.4 Å; both within a 4 Å model cutoff."""
    from ase_deepspin.calculators.hamiltonian import BetheSlater, SpinHamiltonian

    return SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(alpha=0.05, gamma=0.235, delta=1.6, cutoff=3.3)},
                           lattice=MorsePotential(epsilon=0.4, r0=2.485, rho0=6.0, rcut1=3.0, rcut2=3.4))


def fe_cell():
    """2×2×2 conventional bcc cells of Fe (a = 2.87 Å), spins along z."""
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(2)
    atoms.set_initial_magnetic_moments(None)  # ASE's collinear default, replaced by (N, 3) vectors
    atoms.set_initial_magnetic_moments(np.tile([0.0, 0.0, MOMENT], (len(atoms), 1)))
    return atoms


def near_ground_state(n, seed=0):
    """n labelled frames: positions displaced by 0.03 Å, spins tilted by about 0.1/2.2 rad (Gaussian)."""
    from ase_deepspin.training.active import label

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = fe_cell()
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        spins = atoms.get_initial_magnetic_moments() + rng.normal(scale=0.1, size=(len(atoms), 3))
        atoms.set_initial_magnetic_moments(MOMENT * spins / np.linalg.norm(spins, axis=1, keepdims=True))
        frames.append(label(atoms, oracle()))
    return frames


def hot_frames(temperature, n, seed=1, every=10, warmup=100):
    """n labelled snapshots, ``every`` steps apart after ``warmup`` steps (1 fs), of oracle-driven spin-lattice
    dynamics at ``temperature`` (K) from the perfect ferromagnet with thermal lattice velocities."""
    from ase.md.velocitydistribution import thermalize_momenta

    from ase_deepspin.training.active import label
    from ase_deepspin.dynamics import SpinLatticeDynamics

    atoms = fe_cell()
    atoms.calc = oracle()
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn = SpinLatticeDynamics(atoms, dt_fs=1.0, alpha=0.1, temperature_K=temperature, lattice_friction_per_fs=0.01,
                              rng=np.random.default_rng(seed))
    dyn.run(warmup)  # with α = 0.1 the spins take about 100 fs to reach the temperature
    frames = []
    for _ in range(n):
        dyn.run(every)
        frames.append(label(atoms, oracle()))
    return frames


def training_config(systems, steps, torque_prefactor=(10000.0, 1000.0), baseline=False, augment=False,
                    relative_f=None, descriptor="se_e2_a"):
    """A small model (1,300 parameters), DeePMD-kit's YAML layout; the torque prefactor goes from
    ``torque_prefactor[0]`` to ``[1]`` while the force prefactor falls from 1000 to 1. ``augment`` turns on
    random global spin rotations (the oracle's exchange is isotropic, so its labels allow them);
    ``relative_f`` (eV/Å) divides each force error by |F_label| + relative_f, so the hot frames the loop
    adds (forces ten times those near the ground state) do not own the loss. ``descriptor``: se_e2_a (DeepSPIN's
    pseudo-atoms) or spin_invariant (exact under the oracle's spin rotations; augmentation adds nothing then)."""
    invariant = descriptor == "spin_invariant"
    spin = {"use_spin": [True]} if invariant else {"use_spin": [True], "virtual_scale": [0.3]}
    if baseline:
        spin["baseline"] = {"n_basis": 8, "onsite_order": 0}
    return {
        "model": {"type_map": ["Fe"],
                  "descriptor": {"type": descriptor, "sel": [30] if invariant else [30, 30], "rcut_smth": 3.0,
                                 "rcut": 4.0, "neuron": [6, 12], "axis_neuron": 4},
                  "fitting_net": {"neuron": [16, 16]}, "spin": spin},
        "learning_rate": {"start_lr": 0.005, "stop_lr": 0.0005, "decay_steps": max(steps // 5, 1)},
        "loss": {"start_pref_fm": torque_prefactor[0], "limit_pref_fm": torque_prefactor[1],
                 **({} if relative_f is None else {"relative_f": relative_f})},
        "training": {"numb_steps": steps, "n_validation": 2, "disp_freq": steps, "save_freq": steps,
                     "augment_spin_rotation": augment,
                     "training_data": {"systems": [str(s) for s in systems], "batch_size": 2}},
    }


def score(models, frames):
    """The committee's force and torque RMSE on labelled frames and Spearman's ρ between each frame's max
    force (torque) deviation and its true max force (torque) error."""
    from scipy.stats import spearmanr

    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.training.active import committee_rmse

    calc = DeepSpinCalculator([str(m) for m in models])
    deviation, error = {"f": [], "fm": []}, {"f": [], "fm": []}
    for f in frames:
        atoms = f.to_atoms()
        atoms.calc = calc
        devi = calc.get_property("model_deviation", atoms)
        deviation["f"].append(devi["max_devi_f"])
        deviation["fm"].append(devi["max_devi_fm"])
        error["f"].append(np.linalg.norm(atoms.get_forces() - f.forces, axis=1).max())
        error["fm"].append(np.linalg.norm(calc.get_magnetic_torques(atoms) - f.torques, axis=1).max())
    return {**committee_rmse(models, frames),
            **{f"spearman_{k}": float(spearmanr(deviation[k], error[k]).statistic) for k in deviation}}


def main():
    import torch
    import yaml

    from ase_deepspin.training.active import ExploreConfig, final_committee, run_active_learning
    from ase_deepspin.io.frames import write_deepmd_npy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/active_fe")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8000, help="training steps per member (and per warm restart)")
    parser.add_argument("--test-frames", type=int, default=30)
    parser.add_argument("--temperatures", type=float, nargs=3, default=[150.0, 400.0, 1000.0], metavar="K",
                        help="the exploration ladder; the committees are scored at the last one")
    parser.add_argument("--torque-prefactor", type=float, nargs=2, default=[1e5, 1e5],
                        help="start and limit of the torque prefactor (the force prefactor falls from 1000 to 1)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="add the Heisenberg spin baseline to the model")
    parser.add_argument("--relative-f", type=float, default=None, metavar="EV_PER_A",
                        help="relative force errors, |ΔF| / (|F_label| + RELATIVE_F) (DeePMD-kit's relative_f)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="train on randomly rotated spins (exact here: the oracle has no spin-orbit terms)")
    parser.add_argument("--descriptor", choices=["se_e2_a", "spin_invariant"], default="se_e2_a",
                        help="the model's descriptor: DeepSPIN's pseudo-atoms or spin invariants")
    parser.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=False,
                        help="retrain each iteration from the previous members")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a 3,000-parameter model on 16 atoms: a second thread only adds overhead

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data").is_dir():
        write_deepmd_npy(work / "data", near_ground_state(20), ["Fe"])
    (work / "train.yaml").write_text(yaml.safe_dump(training_config([work / "data"], args.steps,
                                                                      args.torque_prefactor, args.baseline,
                                                                      args.augment, args.relative_f,
                                                                      args.descriptor)))
    cfg = ExploreConfig(training=str(work / "train.yaml"), systems=[str(work / "data")], members=args.members,
                        iterations=3, temperatures_K=args.temperatures, canting_rad=[0.1, 0.4, 0.8], strain=0.01,
                        starts=4, steps=100, sample_every=10, trust_f=(0.02, 1.5), trust_fm=(0.005, 0.3),
                        max_labels=20, warm_start=args.warm_start)
    run_active_learning(cfg, oracle(), work / "al")
    committees = [[work / "al" / f"iter_{i:03d}" / "members" / f"member_{k}" / "model.pt" for k in range(args.members)]
                  for i in range(cfg.iterations)] + [final_committee(cfg, work / "al")]
    test = hot_frames(args.temperatures[-1], args.test_frames, seed=11)
    per_rung = -(-args.test_frames // len(args.temperatures))
    ladder = [f for k, t in enumerate(args.temperatures) for f in hot_frames(t, per_rung, seed=21 + k)]
    scores = []
    for i, models in enumerate(committees):
        on_ladder = score(models, ladder)
        scores.append({"committee": i, **score(models, test),
                       "ladder": {k: on_ladder[k] for k in ("forces", "torques", "spearman_f", "spearman_fm")}})
    labels = {"forces": float(np.sqrt(np.mean(np.concatenate([f.forces for f in test]) ** 2))),
              "torques": float(np.sqrt(np.mean(np.concatenate([f.torques for f in test]) ** 2)))}
    print(f"oracle frames at {args.temperatures[-1]:g} K (label RMS: F {labels['forces']:.4f} eV/Å, ω "
          f"{labels['torques']:.4f} eV/μB): committee RMSE and Spearman ρ(max deviation, max error)")
    print(f"and ρ on {len(ladder)} frames across the ladder {', '.join(f'{t:g}' for t in args.temperatures)} K")
    print(f"{'committee':>10s} {'F (eV/Å)':>10s} {'ω (eV/μB)':>10s} {'ρ_F':>6s} {'ρ_ω':>6s} {'ladder ρ_F':>11s} "
          f"{'ladder ρ_ω':>11s}")
    for s in scores:
        print(f"{s['committee']:>10d} {s['forces']:10.4f} {s['torques']:10.4f} {s['spearman_f']:6.2f} "
              f"{s['spearman_fm']:6.2f} {s['ladder']['spearman_f']:11.2f} {s['ladder']['spearman_fm']:11.2f}")
    print(f"fall from committee 0 to 3: forces {scores[0]['forces'] / scores[-1]['forces']:.1f}×, "
          f"torques {scores[0]['torques'] / scores[-1]['torques']:.1f}×")
    (work / "scores.json").write_text(json.dumps({"label_rms": labels, "committees": scores}, indent=1))


if __name__ == "__main__":
    main()
