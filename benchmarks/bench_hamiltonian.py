"""Seconds per SpinHamiltonian call (energy, forces, stress, torques) on a 64³ simple-cubic lattice
with nearest-neighbour exchange only, and per closed-form field evaluation (fixed-lattice path).

    python benchmarks/bench_hamiltonian.py [--n 64] [--out benchmarks/results/hamiltonian.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase_deepspin.build import simple_cubic_spins
from ase_deepspin.calculators.hamiltonian import ShellExchange, SpinHamiltonian
from ase_deepspin.spins import unit_vectors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/hamiltonian.json")
    args = parser.parse_args()
    n, a = args.n, 2.5
    atoms = simple_cubic_spins(n, a)
    calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(0.01,), radii=(a,))})
    times = []
    for k in range(args.repeats):
        atoms.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments() * (1 + 1e-9))
        start = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces", "stress", "magnetic_torques"])
        times.append(time.perf_counter() - start)
    field = calc.frozen_lattice_field(atoms)
    unit, _ = unit_vectors(atoms.get_initial_magnetic_moments())
    start = time.perf_counter()
    for _ in range(10):
        field(unit)
    field_s = (time.perf_counter() - start) / 10
    result = {"spins": n**3, "full_call_s": float(np.median(times)), "closed_form_field_s": field_s}
    print(f"{n}³ = {n ** 3} spins: full call {result['full_call_s']:.3f} s, closed-form field {field_s * 1e3:.1f} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
