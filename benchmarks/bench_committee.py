"""Cost of a committee call per member against a single model's call (issue target: ≤ 1.2×).

Systems: the NiO Σ5 grain boundary (overlap deletion 1.6 Å: 10,752 atoms) and the 32-atom DeltaSpin NiO
frame repeated 2×2×2 (256 atoms). Members: K copies of the shipped NiO model, each loaded on its own (the
cost does not depend on the weights), plain float64 and compressed float32. Each timing is one
energy+forces+torques call after small random moves (0.01 Å rms, as dynamics steps make); single and
committee calls alternate, and the ratio t_committee / (K · t_single) is reported per repeat.

    python benchmarks/bench_committee.py [--members 4] [--repeats 3] [--threads 2] [--out committee.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def system(name):
    from ase_deepspin.io.frames import read_deepmd_npy, read_lammps_spin

    if name == "grain_boundary":
        return read_lammps_spin(SHARED / "nio-gb-sigma5" / "init.data", ["Ni", "O"], delete_overlap=1.6,
                                magnetic=["Ni"])
    return read_deepmd_npy(SHARED / "nio-deltaspin" / "data_0")[0].to_atoms().repeat((2, 2, 2))


def timed_call(atoms, calc, rng):
    atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
    atoms.calc = calc
    start = time.perf_counter()
    atoms.get_forces()
    calc.get_magnetic_torques(atoms)
    return time.perf_counter() - start


def main():
    import torch

    from ase_deepspin import DeepSpinCalculator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="committee.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for name in ("nio256", "grain_boundary"):
        atoms = system(name)
        for label, options in (("float64", {}), ("float32 compressed", {"dtype": "float32", "compress": True})):
            single = DeepSpinCalculator("nio", **options)
            committee = DeepSpinCalculator(["nio"] * args.members, **options)
            for calc in (single, committee):  # warm-up: compile kernels, build tables and neighbour candidates
                timed_call(atoms, calc, rng)
            ratios, t1, tk = [], [], []
            for _ in range(args.repeats):
                t1.append(timed_call(atoms, single, rng))
                tk.append(timed_call(atoms, committee, rng))
                ratios.append(tk[-1] / (args.members * t1[-1]))
            rows.append({"system": name, "atoms": len(atoms), "precision": label, "members": args.members,
                         "single_s": t1, "committee_s": tk, "per_member_ratio": ratios})
            print(f"{name:>15s} ({len(atoms)} atoms) {label:>19s}: single {min(t1):.3f}–{max(t1):.3f} s, "
                  f"{args.members} members {min(tk):.3f}–{max(tk):.3f} s; per member / single "
                  f"{min(ratios):.2f}–{max(ratios):.2f}", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
