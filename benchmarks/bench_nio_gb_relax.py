"""Model evaluations and wall time to relax the NiO Σ5(310) grain boundary (11,328 atoms) with the
shipped DeepSPIN model: geodesic L-BFGS against the damped-precession (LAMMPS ``min_style spin``)
baseline, spins only (lattice fixed, as the paper) and spins + positions.

Converged: max |ω⊥| < tmax (eV/μB), and for the coupled runs also max |F| < fmax (eV/Å). Each run
starts from the same structure (atoms closer than ``--delete-overlap`` deleted, 0.05 Å as the
paper; bulk AFM spins of the file). That structure keeps 192 same-species pairs 0.08 Å apart and 384
pairs 1.33 Å apart in four planes: duplicates of the boundary's construction, harmless on a fixed
lattice, that a lattice relaxation must not be asked to resolve (a model without a short-range
wall pulls the 0.08 Å pairs on top of each other). Relax positions with ``--delete-overlap 1.6``
(10,752 atoms, stoichiometric, no pair closer than 2 Å); the closest pair at the end is reported. Runs stop at convergence, at ``--caps`` evaluations or at ``--minutes`` of wall time, whichever comes
first. Per step the JSON records evaluations, wall time, energy, max |ω⊥| and max |F|; the relaxed
structures go to ``<out dir>/nio_gb_<run>.extxyz`` (spins as initial magnetic moments) for
``examples/nio_gb_relax.py --plot-only``.

    python benchmarks/bench_nio_gb_relax.py [--dtype float32] [--threads 1]
        [--model nio] [--delete-overlap 0.05] [--compressed] [--runs lbfgs-spins,precession-spins,lbfgs-both,precession-both]
        [--caps lbfgs-spins=100,precession-spins=60] [--minutes 12] [--out benchmarks/results/nio_gb_relax.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nio-gb-sigma5" / "init.data"
RUNS = ("lbfgs-spins", "precession-spins", "lbfgs-both", "precession-both")


def load_boundary(path: Path, delete_overlap: float = 0.05):
    """The grain boundary with atoms closer than ``delete_overlap`` (Å) removed and O spins zeroed."""
    from ase_deepspin.io.frames import read_lammps_spin

    return read_lammps_spin(path, ["Ni", "O"], delete_overlap=delete_overlap, magnetic=["Ni"])


def relax(run: str, atoms, calc, tmax: float, fmax: float, cap: int, minutes: float,
          energy_tolerance: float, discrete_factor: float, logfile: str) -> dict:
    from ase_deepspin.dynamics.minimize import DampedPrecession, SpinLBFGS

    method, relax_mode = run.split("-")
    atoms.calc = calc
    moments = np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1)
    if method == "lbfgs":
        opt = SpinLBFGS(atoms, relax=relax_mode, energy_tolerance=energy_tolerance, logfile=logfile)
    else:
        opt = DampedPrecession(atoms, relax=relax_mode, discrete_factor=discrete_factor, logfile=logfile)
    fmax_run = fmax if relax_mode == "both" else np.inf
    history, start = [], time.perf_counter()
    converged = False
    for converged in opt.irun(fmax=fmax_run, tmax=tmax):
        history.append(dict(evaluations=max(opt.n_evaluations, 1), wall_s=time.perf_counter() - start,
                            energy_eV=opt.dofs.get_value(), max_torque=opt.dofs.max_torque(),
                            max_force=opt.dofs.max_force()))
        last = history[-1]
        print(f"{run:17s} evals {last['evaluations']:4d}  {last['wall_s']:7.1f} s  E {last['energy_eV']:.4f} eV  "
              f"max|w_perp| {last['max_torque']:.2e} eV/muB  max|F| {last['max_force']:.2e} eV/A", flush=True)
        if converged or opt.n_evaluations >= cap or last["wall_s"] > 60 * minutes:
            break
    moment_change = np.abs(np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1) - moments).max()
    return dict(run=run, method=method, relax=relax_mode, converged=bool(converged),
                evaluations=history[-1]["evaluations"], wall_s=history[-1]["wall_s"],
                final=history[-1], max_moment_change_muB=float(moment_change),
                closest_pair_A=closest_pair(atoms), history=history)


def closest_pair(atoms, reach: float = 3.0) -> float:
    """Shortest interatomic distance (Å) of a periodic structure (``reach`` if none is closer)."""
    import vesin

    search = vesin.NeighborList(cutoff=reach, full_list=False)
    (distances,) = search.compute(atoms.positions, atoms.cell.array, bool(atoms.pbc.all()), quantities="d")
    return float(distances.min(initial=reach))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="nio", help="model file or shipped model name")
    parser.add_argument("--delete-overlap", type=float, default=0.05,
                        help="Å; 0.05 as the paper (11,328 atoms, keeps 192 pairs 0.08 Å apart and 384 pairs 1.33 Å "
                             "apart), 1.6 for lattice relaxation (10,752 atoms, no pair closer than 2 Å)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--compressed", action="store_true", help="tabulated embedding nets (compress_model)")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {RUNS}")
    parser.add_argument("--caps", default="", help="per-run evaluation caps, e.g. lbfgs-spins=100,precession-both=40")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-time cap per run, minutes")
    parser.add_argument("--tmax", type=float, default=1e-3, help="eV/μB")
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å (coupled runs)")
    parser.add_argument("--energy-tolerance", type=float, default=None,
                        help="eV; L-BFGS rejects steps raising E by more (default 0.02 in float32, 0 in float64)")
    parser.add_argument("--discrete-factor", type=float, default=80.0,
                        help="κ of the damped-precession baseline (LAMMPS default 10 oscillates with this model)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "nio_gb_relax.json")
    args = parser.parse_args()
    import torch

    from ase_deepspin.calculators.deepspin import DeepSpinCalculator

    torch.set_num_threads(args.threads)
    calc = DeepSpinCalculator(args.model, dtype=args.dtype, compress=args.compressed)
    runs = [r for r in args.runs.split(",") if r]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}; choose from {RUNS}")
    caps = {k: int(v) for k, v in (item.split("=") for item in args.caps.split(",") if item)}
    tolerance = args.energy_tolerance if args.energy_tolerance is not None else (0.02 if args.dtype == "float32" else 0.0)
    if not args.data.is_file():
        raise SystemExit(f"grain boundary data not found: {args.data}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start_atoms = load_boundary(args.data, args.delete_overlap)
    report = dict(n_atoms=len(start_atoms), delete_overlap=args.delete_overlap, model=args.model, dtype=args.dtype,
                  compressed=args.compressed, threads=args.threads,
                  tmax=args.tmax, fmax=args.fmax,
                  energy_tolerance=tolerance, discrete_factor=args.discrete_factor, runs=[])
    for run in runs:
        atoms = start_atoms.copy()
        result = relax(run, atoms, calc, args.tmax, args.fmax, caps.get(run, 10**9), args.minutes, tolerance,
                       args.discrete_factor, str(args.out.parent / f"nio_gb_{run}.log"))
        atoms.calc = None
        atoms.write(args.out.parent / f"nio_gb_{run}.extxyz")
        report["runs"].append(result)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"== {run}: converged={result['converged']} after {result['evaluations']} evaluations, "
              f"{result['wall_s']:.0f} s, closest pair {result['closest_pair_A']:.3f} Å", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
