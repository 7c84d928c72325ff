"""Seconds and peak memory per energy+forces+torques call of DeepSpinCalculator, plain vs compressed.

Systems: the NiO Σ5 grain boundary (11,328 atoms after LAMMPS-style overlap deletion) and the
32-atom NiO cell of the DeltaSpin data. Model: the shipped NiO model, which has DeePMD-kit's NiO
example hyper-parameters (rcut 5.6, rcut_smth 5.4, sel 60 per neighbour type, neuron [25, 50, 100],
axis 16, fitting [240, 240, 240]; virtual_scale 1.0 Å/μB). Compressed: ``compress_model`` with its
defaults (tolerance 1e-8, min_distance 0.5 Å), built once before timing.

    python benchmarks/bench_calculator.py [--threads 2] [--out benchmarks/results/calculator.json]

Three timings per case: calls after every atom moved 0.3 Å (a fresh neighbour search), after small
random moves (0.01 Å rms, as dynamics and relaxation steps make; the calculator reuses its
neighbour candidates) and after a change of the spins only (as in spin relaxation).
Peak memory is the process's maximum resident set size (Linux ru_maxrss), so each case runs in a
fresh subprocess. Agreement of compressed and plain results (float64) is reported for both systems.
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
CASES = [("nio32", 50), ("grain_boundary", 3)]


def system(name):
    """The grain boundary (Ni spins from the file, O spins zeroed) or the first DeltaSpin frame."""
    from ase_deepspin.io.frames import read_deepmd_npy, read_lammps_spin

    if name == "grain_boundary":
        return read_lammps_spin(SHARED / "nio-gb-sigma5" / "init.data", ["Ni", "O"], delete_overlap=0.05,
                                magnetic=["Ni"])
    return read_deepmd_npy(SHARED / "nio-deltaspin" / "data_0")[0].to_atoms()


def calculator(kind, dtype):
    from ase_deepspin import DeepSpinCalculator

    return DeepSpinCalculator("nio", dtype=dtype, compress=kind == "compressed")


def measure(name, kind, dtype, threads, repeats):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    atoms = system(name)
    calc = calculator(kind, dtype)
    # three kinds of call: after every atom moved 0.3 Å (beyond half the neighbour skin: a fresh
    # search); after small random moves (0.01 Å rms, as in dynamics and relaxation steps, where
    # the calculator reuses its pair candidates); after a change of the spins only
    rng = np.random.default_rng(0)
    moved, small_moves, spins_only = [], [], []
    for k in range(3 * repeats + 1):
        if k <= repeats:
            atoms.positions += (0.3 if k % 2 else -0.3) * np.array([1.0, 0.0, 0.0])
            times = moved
        elif k <= 2 * repeats:
            atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
            times = small_moves
        else:
            moments = atoms.get_initial_magnetic_moments()
            moments[moments.any(axis=1)] *= 1.0 + 1e-9 * (k + 1)
            atoms.set_initial_magnetic_moments(moments)
            times = spins_only
        t0 = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces", "magnetic_torques"])
        times.append(time.perf_counter() - t0)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    per_call = float(np.median(moved[1:]))
    return {"system": name, "model": kind, "atoms": len(atoms), "dtype": dtype, "threads": threads,
            "seconds_per_call": per_call, "seconds_per_small_move_call": float(np.median(small_moves)),
            "seconds_per_spin_only_call": float(np.median(spins_only)), "first_call_s": moved[0],
            "peak_rss_gib": peak_gib, "us_per_atom": per_call / len(atoms) * 1e6}


def agreement(name, threads):
    """Relative differences of compressed vs plain (float64): |ΔE|/|E|, ‖ΔF‖/‖F‖, ‖Δω‖/‖ω‖."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    atoms = system(name)
    out = {}
    for kind in ("plain", "compressed"):
        calc = calculator(kind, "float64")
        calc.calculate(atoms, ["energy", "forces", "magnetic_torques"])
        out[kind] = calc.results
    p, c = out["plain"], out["compressed"]
    rel = lambda k: float(np.linalg.norm(c[k] - p[k]) / np.linalg.norm(p[k]))  # noqa: E731
    return {"system": name, "energy_rel": abs(c["energy"] - p["energy"]) / abs(p["energy"]),
            "forces_rel": rel("forces"), "torques_rel": rel("magnetic_torques"),
            "forces_max_abs": float(np.abs(c["forces"] - p["forces"]).max())}


def run_one(*args):
    line = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(line.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/calculator.json")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--one", nargs=4, metavar=("SYSTEM", "MODEL", "DTYPE", "REPEATS"), help=argparse.SUPPRESS)
    parser.add_argument("--agree", metavar="SYSTEM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, kind, dtype, repeats = args.one
        print(json.dumps(measure(name, kind, dtype, args.threads, int(repeats))))
        return
    if args.agree:
        print(json.dumps(agreement(args.agree, args.threads)))
        return
    timings, agreements = [], []
    for name, repeats in CASES:
        for kind in ("plain", "compressed"):
            for dtype in ("float64", "float32"):
                row = run_one("--threads", str(args.threads), "--one", name, kind, dtype, str(repeats))
                timings.append(row)
                print(f"{name:>15s} {row['atoms']:6d} atoms {kind:>10s} {dtype}: "
                      f"{row['seconds_per_call'] * 1e3:9.1f} ms/call (fresh search), "
                      f"{row['seconds_per_small_move_call'] * 1e3:9.1f} after small moves, "
                      f"{row['seconds_per_spin_only_call'] * 1e3:9.1f} if only spins changed  "
                      f"peak RSS {row['peak_rss_gib']:.2f} GiB")
    if not args.skip_agreement:
        for name, _ in CASES:
            row = run_one("--threads", str(args.threads), "--agree", name)
            agreements.append(row)
            print(f"{name:>15s} compressed vs plain: energy {row['energy_rel']:.1e}, forces {row['forces_rel']:.1e}, "
                  f"torques {row['torques_rel']:.1e} (relative)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"timings": timings, "agreement": agreements}, indent=2))


if __name__ == "__main__":
    main()
