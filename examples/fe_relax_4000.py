"""Coupled relaxation of 4,000-atom FCC Fe from perturbed positions and random spins, moment lengths free
(``relax="all"``).

A 10×10×10 conventional FCC cell (a = 3.5495 Å, 4,000 atoms) with its positions perturbed (Gaussian, per
component) and random spins of the DeltaSpin data's mean length 1.3 μB is relaxed with geodesic L-BFGS on
positions, spin directions and moment lengths together, with the shipped Fe model (compressed). Two kinds
of random spins (``--start``):

- ``tilted`` (default): the start of the DeepSPIN authors' own 4,000-atom FCC-Fe relaxation
  (github.com/hztttt/Synergistic_Optimization, ``example/synergistic_optimization/init.data``, measured
  there): each spin of the AFMD order tilted by an angle drawn uniformly from 0–90° about a random
  azimuth, positions perturbed by 0.115 Å. Its spin order is one the data hold.
- ``random``: directions uniform on the sphere, positions perturbed by 0.05 Å. No FCC-Fe DeltaSpin frame
  is disordered, so this asks the model for spin orders it never saw (the calculator warns).

The result is compared with the double-layer antiferromagnetic (AFMD) state of the same perturbed
positions relaxed the same way: energy per atom above it, AFMD order parameter |L| (μB, equal to
⟨|S|⟩ in perfect AFMD order), ⟨|S|⟩ and its spread. Prints and writes (JSON) the evaluations and
minutes each relaxation took, and the relaxed random start as extended XYZ beside the JSON. With
``relax="all"`` the lengths are kept inside the range the model was trained on (``moment_bounds``), where
it has data; ``--unbounded`` lets them go anywhere.

A relaxation from fully random spins is a quench: it ends in the nearest minimum, usually a frustrated
mixture of AFMD domains of the three cubic axes, not the global ground state; the energy above AFMD
says how far it got.

    python examples/fe_relax_4000.py [--start tilted|random] [--repeat 10] [--steps 3000] [--tmax 0.01]
                                     [--fmax 0.05] [--relax all|both] [--unbounded]
"""

import argparse
import json
import time

import numpy as np

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.build import afmd_order, fcc_fe_afmd, tilt_spins
from ase_deepspin.dynamics import SpinLBFGS

A = 3.5495  # Å

parser = argparse.ArgumentParser()
parser.add_argument("--start", choices=["tilted", "random"], default="tilted",
                    help="tilted: AFMD spins tilted by 0-90 degrees (the DeepSPIN authors' start); random: uniform")
parser.add_argument("--repeat", type=int, default=10, help="conventional cells along each axis (even)")
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--fmax", type=float, default=0.05, help="eV/Å")
parser.add_argument("--tmax", type=float, default=0.01, help="eV/μB (full torque, lengths included)")
parser.add_argument("--relax", choices=["all", "both"], default="all",
                    help="all: moment lengths free too; both: positions and spin directions, |S| fixed at 1.3 μB")
parser.add_argument("--unbounded", action="store_true",
                    help="relax='all' without the trust region on moment lengths (the model's training range)")
parser.add_argument("--model", default="fe", help="model file or shipped model name (default: fe)")
parser.add_argument("--out", default="fe_relax_4000.json")
args = parser.parse_args()

calc = DeepSpinCalculator(args.model, compress=True)
trained = calc.model.config.data_ranges["moment"][0]  # μB: the moment lengths the model was trained on


def relax(atoms, label):
    atoms.calc = calc
    bounds = None if args.relax != "all" or args.unbounded else tuple(trained)
    opt = SpinLBFGS(atoms, relax=args.relax, logfile=None, moment_bounds=bounds)
    started = time.perf_counter()
    converged = opt.run(fmax=args.fmax, tmax=args.tmax, steps=args.steps)
    lengths = np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1)
    result = {"structure": label, "atoms": len(atoms), "relax": args.relax, "moment_bounds_muB": bounds,
              "converged": bool(converged), "steps": opt.nsteps,
              "evaluations": opt.n_evaluations, "minutes": (time.perf_counter() - started) / 60,
              "energy_per_atom_eV": atoms.get_potential_energy() / len(atoms), "afmd_order_muB": afmd_order(atoms, A),
              "mean_length_muB": float(lengths.mean()), "length_std_muB": float(lengths.std()),
              "max_force_eV_per_A": float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
              "lengths_outside_training_range": int(np.sum((lengths < trained[0] * (1 - 1e-9))
                                                           | (lengths > trained[1] * (1 + 1e-9)))),
              "lengths_on_a_bound": 0 if bounds is None else int(np.sum(np.isclose(lengths, trained[0], rtol=1e-9)
                                                                        | np.isclose(lengths, trained[1], rtol=1e-9))),
              "outside_data": dict(calc.outside_data)}
    print(f"{label}: {'converged' if converged else 'not converged'} after {opt.nsteps} steps, "
          f"{opt.n_evaluations} evaluations, {result['minutes']:.1f} min; E {result['energy_per_atom_eV']:.5f} eV/atom, "
          f"|L| {result['afmd_order_muB']:.3f} μB, <|S|> {lengths.mean():.3f} ± {lengths.std():.3f} μB, "
          f"{result['lengths_outside_training_range']} moments outside the trained {trained[0]:.2f}-{trained[1]:.2f} μB "
          f"({result['lengths_on_a_bound']} on its bounds); outside the data: {'; '.join(calc.outside_data.values()) or 'no'}",
          flush=True)
    return result


repeat = (args.repeat, args.repeat, args.repeat + args.repeat % 2)
rng = np.random.default_rng(0)
displacements = rng.normal(scale=0.115 if args.start == "tilted" else 0.05, size=(4 * np.prod(repeat), 3))
reference = fcc_fe_afmd(a=A, repeat=repeat)
reference.positions += displacements
ground = relax(reference, "AFMD spins, same positions")
atoms = fcc_fe_afmd(a=A, repeat=repeat)
atoms.positions += displacements
if args.start == "tilted":
    atoms.set_initial_magnetic_moments(tilt_spins(atoms.get_initial_magnetic_moments(), 90.0, rng))
else:
    directions = rng.normal(size=(len(atoms), 3))
    atoms.set_initial_magnetic_moments(1.3 * directions / np.linalg.norm(directions, axis=1, keepdims=True))
quench = relax(atoms, f"{args.start} start")
atoms.write(args.out.replace(".json", ".extxyz"))  # spins as initial magnetic moments, for a look at what it found
quench["above_afmd_meV_per_atom"] = 1e3 * (quench["energy_per_atom_eV"] - ground["energy_per_atom_eV"])
print(f"{args.start} start ends {quench['above_afmd_meV_per_atom']:.2f} meV/atom above the relaxed AFMD state")
with open(args.out, "w") as f:
    json.dump([ground, quench], f, indent=1)
print(f"written {args.out}")
