"""Can a model without a spin baseline learn an exchange field? The active-learning example's oracle (bcc Fe,
16 atoms, Bethe–Slater exchange plus a Morse lattice, no spin-orbit terms) labels 20 frames near the
ferromagnetic ground state and 20 from oracle-driven spin-lattice dynamics at each of 150, 400 and 1000 K; the
example's small model (about 1,300 parameters) is trained on them without a baseline, once per descriptor and
seed, and scored on 30 fresh frames at 1000 K: torque and force RMSE as fractions of the labels' RMS.
The pseudo-atom models train with random global spin rotations (exact for this oracle); spin-invariant models
need none.

    python benchmarks/bench_bethe_slater.py [--steps 3000] [--seeds 1 2 3] [--out bethe_slater.json]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def rms(arrays) -> float:
    return float(np.sqrt(np.mean(np.concatenate([np.ravel(a) for a in arrays]) ** 2)))


def main():
    import active_learning_fe as example
    import torch

    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.frames import write_deepmd_npy
    from ase_deepspin.training.config import TrainConfig
    from ase_deepspin.training.train import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="bethe_slater.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bethe_slater_"))
    frames = example.near_ground_state(20)
    for k, temperature in enumerate((150.0, 400.0, 1000.0)):
        frames += example.hot_frames(temperature, 20, seed=31 + k)
    write_deepmd_npy(work / "data", frames, ["Fe"])
    test = example.hot_frames(1000.0, 30, seed=11)
    labels = {"torques": rms([f.torques for f in test]), "forces": rms([f.forces for f in test])}
    rows = []
    for descriptor in ("spin_invariant", "se_e2_a"):
        for seed in args.seeds:
            raw = example.training_config([work / "data"], args.steps, (1e5, 1e5), baseline=False,
                                          augment=descriptor == "se_e2_a", descriptor=descriptor)
            raw["model"]["descriptor"]["seed"] = seed
            raw["training"].update(seed=seed, output_dir=str(work / f"{descriptor}_{seed}"))
            started = time.perf_counter()
            path = train(TrainConfig.from_dict(raw), progress=False, log=lambda *a: None)
            calc = DeepSpinCalculator(str(path))
            torques, forces = [], []
            for frame in test:
                atoms = frame.to_atoms()
                atoms.calc = calc
                torques.append(calc.get_magnetic_torques(atoms) - frame.torques)
                forces.append(atoms.get_forces() - frame.forces)
            row = {"descriptor": descriptor, "seed": seed, "minutes": (time.perf_counter() - started) / 60,
                   "torques_over_label_rms": rms(torques) / labels["torques"],
                   "forces_over_label_rms": rms(forces) / labels["forces"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for descriptor in ("spin_invariant", "se_e2_a"):
        ratios = [r["torques_over_label_rms"] for r in rows if r["descriptor"] == descriptor]
        forces = [r["forces_over_label_rms"] for r in rows if r["descriptor"] == descriptor]
        print(f"{descriptor:15s} torque RMSE / label RMS {min(ratios):.3f}-{max(ratios):.3f}, "
              f"force {min(forces):.3f}-{max(forces):.3f} ({len(ratios)} seeds, {args.steps} steps)")
    out = Path(__file__).parent / "results" / args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%F"), "label_rms": labels, "steps": args.steps, "rows": rows},
                              indent=1))


if __name__ == "__main__":
    main()
