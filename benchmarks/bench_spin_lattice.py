"""Spin-lattice dynamics with the shipped NiO model: atom·steps per second and model evaluations per step.

    python benchmarks/bench_spin_lattice.py [--steps 3] [--repeats 2] [--out benchmarks/results/spin_lattice.json]

Systems: type-II NiO, 2,048 atoms (64-atom cubes 4×4×2, spins canted by 0.2 rad), and the Σ5 grain
boundary without its near-duplicate atoms (pairs closer than 1.6 Å lose one atom: 10,752 atoms; the
paper's 11,328-atom file keeps pairs 0.079 Å apart that no dynamics survives). Cases: plain and compressed
model (float64), 1 and 2 torch threads; ``SpinLatticeDynamics`` at 0.5 fs with α = 0.01 and a 300 K spin
and lattice bath, timed over ``--steps`` steps after one warm-up step, cases interleaved over ``--repeats``.
Evaluations per step are counted on the calculator. LAMMPS's rate for the same NiO cell is in
bench_lammps_deepspin.py (this package's fix sib/spin, the same scheme).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GB = ROOT.parent / "shared" / "data" / "nio-gb-sigma5" / "init.data"


def systems() -> dict:
    from ase_deepspin.io.frames import read_lammps_spin

    spec = importlib.util.spec_from_file_location("lammps_spin_lattice", ROOT / "examples" / "lammps_spin_lattice.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = {"nio_2048": example.canted_nio([4, 4, 2])}
    if GB.is_file():
        out["grain_boundary_10752"] = read_lammps_spin(GB, ["Ni", "O"], delete_overlap=1.6, magnetic=["Ni"])
    return out


def rate(atoms, compressed: bool, threads: int, steps: int) -> tuple[float, float]:
    """(atom·steps per second, model evaluations per step)."""
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.dynamics import SpinLatticeDynamics

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import count_calculations

    torch.set_num_threads(threads)
    atoms = atoms.copy()
    calc = DeepSpinCalculator("nio", compress=compressed)
    calls = count_calculations(calc)
    atoms.calc = calc
    dynamics = SpinLatticeDynamics(atoms, dt_fs=0.5, alpha=0.01, temperature_K=300.0, lattice_friction_per_fs=0.01,
                                   rng=np.random.default_rng(0))
    dynamics.run(1)
    calls["n"] = 0
    start = time.perf_counter()
    dynamics.run(steps)
    return len(atoms) * steps / (time.perf_counter() - start), calls["n"] / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spin_lattice.json"))
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")  # the paper's boundary is outside the data: the calculator says so once
    cases = [(name, kind, threads) for name in systems() for kind in ("compressed", "plain") for threads in (1, 2)]
    structures = systems()
    results = {f"{n}/{k}/{t}thread": {"atom_steps_per_s": [], "evaluations_per_step": []} for n, k, t in cases}
    for _ in range(args.repeats):
        for name, kind, threads in cases:
            value, evaluations = rate(structures[name], kind == "compressed", threads, args.steps)
            entry = results[f"{name}/{kind}/{threads}thread"]
            entry["atom_steps_per_s"].append(value)
            entry["evaluations_per_step"].append(evaluations)
            print(f"{name:22s} {kind:10s} {threads} thread(s): {value:8.0f} atom·steps/s, "
                  f"{evaluations:.0f} evaluations per step", flush=True)
    Path(args.out).write_text(json.dumps({"steps": args.steps, "dt_fs": 0.5, "cases": results}, indent=1))
    print("ranges over repeats:")
    for key, entry in results.items():
        print(f"  {key:40s} {min(entry['atom_steps_per_s']):8.0f} - {max(entry['atom_steps_per_s']):8.0f} atom·steps/s")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
