"""Seconds and peak memory per energy+forces+torques call of DeepSpinCalculator.

Systems: the NiO Σ5 grain boundary (11,328 atoms after LAMMPS-style overlap deletion) and the
32-atom NiO cell of the DeltaSpin data, with DeePMD-kit's NiO example hyper-parameters
(rcut 5.6, rcut_smth 5.4, sel 60 per neighbour type, neuron [25, 50, 100], axis 16, fitting
[240, 240, 240], eta_Ni 0.314). Weights are random (seeded): speed does not depend on them.

    python benchmarks/bench_calculator.py [--threads 2] [--out benchmarks/results/calculator.json]

Peak memory is the process's maximum resident set size (Linux ru_maxrss), so each system and
precision runs in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def example_model(dtype):
    import torch
    from ase_deepspin import DeepSpinModel, ModelConfig

    model = DeepSpinModel(ModelConfig(type_map=["Ni", "O"], virtual_scale=[0.314, 0.0]), dtype=torch.float64)
    model.env_mean[:, 0] = 0.03
    model.env_std[:] = 0.05
    return model


def system(name):
    """The grain boundary (Ni spins from the file, O spins zeroed) or the first DeltaSpin frame."""
    from ase_deepspin.data import read_deepmd_npy, read_lammps_spin

    if name == "grain_boundary":
        atoms = read_lammps_spin(SHARED / "nio-gb-sigma5" / "init.data", ["Ni", "O"], delete_overlap=0.05)
        moments = atoms.get_initial_magnetic_moments()
        moments[atoms.numbers == 8] = 0.0
        atoms.set_initial_magnetic_moments(moments)
        return atoms
    return read_deepmd_npy(SHARED / "nio-deltaspin" / "data_0")[0].to_atoms()


def measure(name, dtype, threads, repeats):
    import numpy as np
    import torch
    from ase_deepspin import DeepSpinCalculator

    torch.set_num_threads(threads)
    atoms = system(name)
    calc = DeepSpinCalculator(example_model(dtype), dtype=dtype)
    times = []
    for k in range(repeats + 1):
        moments = atoms.get_initial_magnetic_moments()
        moments[moments.any(axis=1)] *= 1.0 + 1e-9 * (k + 1)  # new spins: a fresh calculation
        atoms.set_initial_magnetic_moments(moments)
        t0 = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces", "magnetic_torques"])
        times.append(time.perf_counter() - t0)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"system": name, "atoms": len(atoms), "dtype": dtype, "threads": threads,
            "seconds_per_call": float(np.median(times[1:])), "first_call_s": times[0], "peak_rss_gib": peak_gib,
            "max_abs_force": float(np.abs(calc.results["forces"]).max())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/calculator.json")
    parser.add_argument("--one", nargs=3, metavar=("SYSTEM", "DTYPE", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.threads, int(args.one[2]))))
        return
    results = []
    for name, repeats in [("nio32", 50), ("grain_boundary", 2)]:
        for dtype in ["float64", "float32"]:
            line = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", name, dtype,
                                   str(repeats)], check=True, capture_output=True, text=True).stdout
            row = json.loads(line.strip().splitlines()[-1])
            results.append(row)
            print(f"{row['system']:>15s} {row['atoms']:6d} atoms {dtype}: {row['seconds_per_call'] * 1e3:9.1f} ms/call"
                  f"  peak RSS {row['peak_rss_gib']:.2f} GiB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
