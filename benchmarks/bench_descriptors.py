"""Cost of the two descriptors side by side: one energy+forces+torques call on the NiO Σ5 grain boundary
(10,752 atoms, overlap deletion 1.6 Å) after small moves, compressed float32, and training steps per second
on the DeltaSpin NiO frames (batch 3), for two NiO models of the same sizes: a pseudo-atom model
(symmetrised under time reversal: the pseudo-atom blocks run twice, as in the NiO model shipped until
2026-12-07) and a spin-invariant one (the shipped one now).
Calls alternate between the models; each repeat reports medians and the ratio invariant / pseudo-atom.

    python benchmarks/bench_descriptors.py INVARIANT_MODEL PSEUDO_MODEL [--threads 1] [--repeats 3]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def calls(models, repeats, calls_per_repeat):
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.frames import read_lammps_spin

    atoms = read_lammps_spin(SHARED / "nio-gb-sigma5" / "init.data", ["Ni", "O"], delete_overlap=1.6,
                             magnetic=["Ni"])
    calcs = {name: DeepSpinCalculator(path, dtype="float32", compress=True) for name, path in models.items()}
    rng = np.random.default_rng(0)
    for calc in calcs.values():  # compile the kernels, build the neighbour candidates
        atoms.calc = calc
        atoms.get_forces()
    rows = []
    for repeat in range(repeats):
        times = {name: [] for name in calcs}
        for _ in range(calls_per_repeat):
            for name, calc in calcs.items():
                atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
                atoms.calc = calc
                start = time.perf_counter()
                atoms.get_forces()
                calc.get_magnetic_torques(atoms)
                times[name].append(time.perf_counter() - start)
        median = {name: float(np.median(t)) for name, t in times.items()}
        rows.append({"atoms": len(atoms), "repeat": repeat, "median_s": median,
                     "ratio": median["spin_invariant"] / median["pseudo_atom"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def training(models, steps, repeats):
    import torch

    from ase_deepspin.io import load_model, resolve_model_path
    from ase_deepspin.io.frames import read_frames
    from ase_deepspin.training.config import TrainConfig
    from ase_deepspin.training.train import PreparedFrames, take_step

    frames = read_frames(SHARED / "nio-deltaspin")[:30]
    prepared = {}
    for name, path in models.items():
        model = load_model(resolve_model_path(path))
        cfg = TrainConfig(model=model.config, systems=[], batch_size=3)
        prepared[name] = (model, PreparedFrames(frames, model), torch.optim.Adam(model.parameters(), lr=1e-4), cfg)
    rows = []
    for repeat in range(repeats):
        rate = {}
        for name, (model, data, optimizer, cfg) in prepared.items():
            start = time.perf_counter()
            for step in range(steps):
                k = (3 * step) % 27
                take_step(model, optimizer, data.batch([k, k + 1, k + 2]), cfg, step)
            rate[name] = steps / (time.perf_counter() - start)
        rows.append({"repeat": repeat, "steps_per_s": rate, "ratio": rate["spin_invariant"] / rate["pseudo_atom"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("invariant", help="spin-invariant NiO model file")
    parser.add_argument("pseudo", help="pseudo-atom NiO model file (the one shipped until 2026-12-07: git show "
                                       "a82d819:ase_deepspin/pretrained/nio.pt > nio_pseudo.pt)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="descriptors.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {"pseudo_atom": args.pseudo, "spin_invariant": args.invariant}
    result = {"date": time.strftime("%F"), "threads": args.threads, "grain_boundary_calls":
              calls(models, args.repeats, args.calls), "training": training(models, args.steps, args.repeats)}
    out = Path(__file__).parent / "results" / args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
