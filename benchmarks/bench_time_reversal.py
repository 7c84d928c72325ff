"""Cost of time-reversal symmetrisation: one energy+forces+torques call, symmetrised vs one pass.

The symmetrised model evaluates its network at S and at −S; real-atom edges, their embeddings and
empty slots are shared by both halves, the pseudo-atom blocks and the fitting net run twice. The
peer is the same weights with ``time_reversal=False`` (one pass), timed interleaved with it in the
same process on the NiO Σ5 grain boundary (11,328 atoms, LAMMPS-style overlap deletion, as in
``bench_calculator.py``), plain and compressed, after small random moves of every atom
(neighbour candidates reused, as in relaxation and dynamics). Target: ratio <= 1.5.

    python benchmarks/bench_time_reversal.py [--model nio] [--threads 1] [--repeats 3]
        [--out benchmarks/results/time_reversal.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from ase_deepspin import DeepSpinCalculator, compress_model, load_model
from ase_deepspin.io.frames import read_lammps_spin
from ase_deepspin.model import DeepSpinModel
from ase_deepspin.io.model_file import resolve_model_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def with_symmetry(model: DeepSpinModel, time_reversal: bool) -> DeepSpinModel:
    """The same weights with the symmetrisation switched on or off."""
    out = DeepSpinModel(dataclasses.replace(model.config, time_reversal=time_reversal), dtype=model.dtype)
    out.load_state_dict(model.state_dict())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nio")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/time_reversal.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    atoms = read_lammps_spin(SHARED / "nio-gb-sigma5" / "init.data", ["Ni", "O"], delete_overlap=0.05,
                             magnetic=["Ni"])
    base = load_model(resolve_model_path(args.model))
    rng = np.random.default_rng(0)
    results = {"atoms": len(atoms), "threads": args.threads, "repeats": args.repeats, "cases": {}}
    for kind in ("plain", "compressed"):
        source = compress_model(base) if kind == "compressed" else base
        calcs = {tr: DeepSpinCalculator(with_symmetry(source, tr)) for tr in (False, True)}
        for calc in calcs.values():  # warm-up: neighbour search, numba compilation
            calc.get_potential_energy(atoms)
        times = {False: [], True: []}
        for _ in range(args.repeats):
            atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
            for tr, calc in calcs.items():
                start = time.perf_counter()
                calc.get_forces(atoms)
                calc.get_property("magnetic_torques", atoms)
                times[tr].append(time.perf_counter() - start)
        ratios = [s / p for s, p in zip(times[True], times[False])]
        results["cases"][kind] = {"one_pass_s": times[False], "symmetrised_s": times[True], "ratio": ratios}
        print(f"{kind:>10}: one pass {min(times[False]):.2f}-{max(times[False]):.2f} s, symmetrised "
              f"{min(times[True]):.2f}-{max(times[True]):.2f} s, ratio {min(ratios):.2f}-{max(ratios):.2f} "
              f"over {args.repeats} interleaved repeats ({len(atoms)} atoms, {args.threads} thread(s))")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
