"""Cost of free moment lengths, against the fixed-length peers in the same run (ratios).

    python benchmarks/bench_longitudinal.py [--repeat 4] [--steps 20] [--repeats 3] [--out benchmarks/results/longitudinal.json]

FCC Fe in AFMD order (``repeat``³ conventional cells, 256 atoms by default; spins canted by 0.3 rad,
positions perturbed by 0.03 Å), shipped Fe model, compressed, float64, one torch thread:

- dynamics: ``LongitudinalSpinLatticeDynamics`` (α = 0.1, α_∥ = 0.01, 300 K bath) against
  ``SpinLatticeDynamics`` with the same settings, atom·steps per second over ``--steps`` steps after a
  warm-up step; cases interleaved over ``--repeats``, range reported;
- relaxation: ``SpinLBFGS`` with ``relax="all"`` (lengths free) against ``relax="both"``, evaluations
  and seconds to max |F| < 0.05 eV/Å and max |ω| < 0.01 eV/μB (the full torque for "all", the
  transverse one for "both").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def start(repeat: int):
    from ase_deepspin.build import fcc_fe_afmd

    atoms = fcc_fe_afmd(repeat=(repeat, repeat, repeat + repeat % 2))
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
    spins = atoms.get_initial_magnetic_moments()
    spins += 0.3 * np.linalg.norm(spins, axis=1, keepdims=True) * rng.normal(size=spins.shape) / np.sqrt(3)
    atoms.set_initial_magnetic_moments(1.3 * spins / np.linalg.norm(spins, axis=1, keepdims=True))
    return atoms


def dynamics_rate(atoms, calc, longitudinal: bool, steps: int) -> float:
    from ase_deepspin.dynamics import LongitudinalSpinLatticeDynamics, SpinLatticeDynamics

    atoms = atoms.copy()
    atoms.calc = calc
    common = dict(dt_fs=0.5, alpha=0.1, temperature_K=300.0, lattice_friction_per_fs=0.02, rng=np.random.default_rng(0))
    md = (LongitudinalSpinLatticeDynamics(atoms, longitudinal_damping=0.01, **common) if longitudinal
          else SpinLatticeDynamics(atoms, **common))
    md.run(1)
    began = time.perf_counter()
    md.run(steps)
    return len(atoms) * steps / (time.perf_counter() - began)


def relaxation(atoms, calc, relax: str) -> dict:
    from ase_deepspin.dynamics import SpinLBFGS

    atoms = atoms.copy()
    atoms.calc = calc
    opt = SpinLBFGS(atoms, relax=relax, logfile=None)
    began = time.perf_counter()
    converged = opt.run(fmax=0.05, tmax=0.01, steps=2000)
    return {"converged": bool(converged), "evaluations": opt.n_evaluations, "seconds": time.perf_counter() - began,
            "energy_per_atom_eV": atoms.get_potential_energy() / len(atoms)}


def main():
    from ase_deepspin import DeepSpinCalculator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "longitudinal.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    calc = DeepSpinCalculator("fe", compress=True)
    atoms = start(args.repeat)
    rates = {"longitudinal": [], "fixed_length": []}
    for _ in range(args.repeats):
        for kind in rates:
            rates[kind].append(dynamics_rate(atoms, calc, kind == "longitudinal", args.steps))
    ratios = [a / b for a, b in zip(rates["longitudinal"], rates["fixed_length"])]
    print(f"{len(atoms)} atoms, atom·steps/s: longitudinal {min(rates['longitudinal']):.0f}-"
          f"{max(rates['longitudinal']):.0f}, fixed length {min(rates['fixed_length']):.0f}-"
          f"{max(rates['fixed_length']):.0f}; ratio {min(ratios):.2f}-{max(ratios):.2f}")
    relaxations = {relax: relaxation(atoms, calc, relax) for relax in ("both", "all")}
    for relax, r in relaxations.items():
        print(f"relax={relax!r}: {'converged' if r['converged'] else 'NOT converged'}, {r['evaluations']} evaluations, "
              f"{r['seconds']:.1f} s, E {r['energy_per_atom_eV']:.5f} eV/atom")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"atoms": len(atoms), "atom_steps_per_s": rates, "ratio": ratios,
                                          "relaxation": relaxations}, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
