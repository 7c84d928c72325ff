"""Spin-lattice dynamics of NiO with the shipped model: LAMMPS (``fix sib/spin``, 1 and 2 ranks) vs
SpinLatticeDynamics (1 and 2 threads), atom·steps per second in one run; the cost of one model call in
LAMMPS, as a TorchScript module called from Python and in DeepSpinCalculator; optionally the Σ5 grain
boundary under ``mpirun -np 2`` with the peak memory of each rank.

    python benchmarks/bench_lammps_deepspin.py [--repeat 4 4 2] [--steps 10] [--repeats 2]
        [--gb-steps 0] [--out benchmarks/results/lammps_deepspin.json]

System: type-II antiferromagnetic NiO, 64-atom cubes repeated (default 2,048 atoms), spins canted by
0.2 rad, lattice velocities at 300 K; the shipped model compressed (float64); 0.2 fs, NVE. Both integrators
take the same two model calls per step (LAMMPS: the fix's at the midpoint, its own at the end). LAMMPS rates
come from its "Loop time" after 3 warm-up steps (TorchScript profiles and optimises the module in its first
calls), SpinLatticeDynamics' from ``run`` after one warm-up step.
"Model call": LAMMPS with the fix holding spins and lattice (one pair call per step, after a warm-up run);
the module LAMMPS loads (``torch.jit.load`` of the written ``.pth``, forward_lower on LAMMPS-like inputs,
table path through autograd: TorchScript cannot call the fused numba kernels); DeepSpinCalculator (fused
CPU kernels). All on 1 thread. ``--gb-steps N`` adds N spin-lattice steps of the 10,752-atom boundary
(overlap deletion 1.6 Å) at -np 2. Needs the LAMMPS route of ``bash examples/setup_lammps_deepspin.sh``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.md.velocitydistribution import thermalize_momenta

ROOT = Path(__file__).resolve().parents[1]


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_inputs(atoms, model, workdir: Path):
    from ase_deepspin.io.lammps import write_spin_data
    from ase_deepspin.io.torchscript import write_lammps_model

    write_spin_data(workdir / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, workdir / "model.pth")


def loop_time(output: str) -> float:
    """Seconds of LAMMPS's last run loop (start-up excluded)."""
    return float(re.findall(r"Loop time of ([0-9.eE+-]+) on", output)[-1])


def lammps_rate(atoms, model, route, workdir: Path, nprocs: int, steps: int, memory=None) -> float:
    """Atom·steps per second of LAMMPS's loop with fix sib/spin (inputs already in ``workdir``)."""
    from ase_deepspin.io.lammps import run_lammps, spin_lattice_input

    text = spin_lattice_input("system.data", "model.pth", route["plugin"], route["sib_plugin"],
                              model.config.type_map, skin=1.0, steps=steps, dt_fs=0.2, thermo=steps)
    text = text.replace(f"run {steps}", f"run 3\nrun {steps}")  # TorchScript's profiling calls out of the timing
    if memory is None:
        return len(atoms) * steps / loop_time(run_lammps(text, workdir, route["lmp"], nprocs=nprocs,
                                                         env=route["env"], timeout=7200))
    with memory:
        output = run_lammps(text, workdir, route["lmp"], nprocs=nprocs, env=route["env"], timeout=7200)
    return len(atoms) * steps / loop_time(output)


def ours_rate(atoms, model, threads: int, steps: int) -> float:
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.dynamics.llg import SpinLatticeDynamics

    torch.set_num_threads(threads)
    atoms = atoms.copy()
    atoms.calc = DeepSpinCalculator(model)
    dynamics = SpinLatticeDynamics(atoms, dt_fs=0.2)
    dynamics.run(1)
    start = time.perf_counter()
    dynamics.run(steps)
    return len(atoms) * steps / (time.perf_counter() - start)


def model_calls(atoms, model, route, workdir: Path, repeats: int, steps: int = 3) -> dict:
    """Seconds per energy+forces+torques call, 1 thread: LAMMPS (pair_style deepspin), the module it loads
    called from Python, and DeepSpinCalculator (inputs already in ``workdir``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_torchscript import lammps_inputs

    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.lammps import _deepspin_setup, run_lammps

    torch.set_num_threads(1)
    text = "\n".join(_deepspin_setup("system.data", "model.pth", route["plugin"], model.config.type_map, 1.0) + [
        f"plugin load {route['sib_plugin']}", "fix hold all sib/spin lattice frozen spins frozen",
        "timestep 0.0002", f"thermo {steps}", "run 3", f"run {steps}"]) + "\n"
    inputs = lammps_inputs(atoms, model.config.rcut + 1.0)[:4]
    module = torch.jit.load(str(workdir / "model.pth"))
    for _ in range(3):  # TorchScript's profiling runs and its optimisation
        module.forward_lower(*inputs)
    calc = DeepSpinCalculator(model)
    times = {"lammps_s": [], "torchscript_s": [], "calculator_s": []}
    for k in range(repeats):
        times["lammps_s"].append(loop_time(run_lammps(text, workdir, route["lmp"], env=route["env"])) / steps)
        start = time.perf_counter()
        module.forward_lower(*inputs)
        times["torchscript_s"].append(time.perf_counter() - start)
        atoms.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments() * (1.0 + 1e-6 * (k + 1)))
        atoms.calc = calc
        start = time.perf_counter()
        atoms.get_forces()
        calc.get_magnetic_torques(atoms)
        times["calculator_s"].append(time.perf_counter() - start)
    return times


def span(values) -> str:
    return f"{min(values):.3g} - {max(values):.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, nargs=3, default=[4, 4, 2])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gb-steps", type=int, default=0, help="spin-lattice steps of the grain boundary at -np 2")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lammps_deepspin.json"))
    args = parser.parse_args()
    from ase_deepspin import compress_model
    from ase_deepspin.io import load_model
    from ase_deepspin.io.frames import read_lammps_spin
    from ase_deepspin.io.lammps import lammps_route

    route = lammps_route(required=True)
    if route["sib_plugin"] is None:
        raise FileNotFoundError("fix sib/spin is not built: run bash examples/setup_lammps_deepspin.sh")
    gb_example = _example("lammps_deepspin_gb")
    atoms = _example("lammps_spin_lattice").canted_nio(args.repeat)
    thermalize_momenta(atoms, temperature_K=300.0, rng=np.random.default_rng(0))
    atoms.wrap()
    model = compress_model(load_model(ROOT / "ase_deepspin" / "pretrained" / "nio.pt"))
    rates = {"lammps_np1": [], "lammps_np2": [], "ours_1thread": [], "ours_2threads": []}
    result = {"atoms": len(atoms), "steps": args.steps, "dt_fs": 0.2, "model_calls_per_step": 2}
    with tempfile.TemporaryDirectory() as tmp:
        write_inputs(atoms, model, Path(tmp))
        for _ in range(args.repeats):  # interleaved, so that machine noise hits every case alike
            rates["lammps_np1"].append(lammps_rate(atoms, model, route, Path(tmp), 1, args.steps))
            rates["lammps_np2"].append(lammps_rate(atoms, model, route, Path(tmp), 2, args.steps))
            rates["ours_1thread"].append(ours_rate(atoms, model, 1, args.steps))
            rates["ours_2threads"].append(ours_rate(atoms, model, 2, args.steps))
        result |= {"atom_steps_per_s": rates, "model_call": model_calls(atoms, model, route, Path(tmp), args.repeats)}
        print(f"NiO {len(atoms)} atoms, shipped model compressed (float64), {args.steps} steps x {args.repeats}")
        for key, values in rates.items():
            print(f"  {key:14s} {span(values)} atom·steps/s")
        ratio = [lmp / ours for lmp, ours in zip(rates["lammps_np1"], rates["ours_1thread"])]
        print(f"  LAMMPS / SpinLatticeDynamics, 1 core each: {span(ratio)}")
        calls = result["model_call"]
        print(f"  one model call (s): LAMMPS {span(calls['lammps_s'])}, module from Python "
              f"{span(calls['torchscript_s'])}, calculator {span(calls['calculator_s'])}")
        if args.gb_steps:
            gb = read_lammps_spin(gb_example.GB, ["Ni", "O"], delete_overlap=1.6, magnetic=["Ni"])
            memory = gb_example.PeakMemory()
            write_inputs(gb, model, Path(tmp))
            rate = lammps_rate(gb, model, route, Path(tmp), 2, args.gb_steps, memory=memory)
            result["grain_boundary"] = {"atoms": len(gb), "steps": args.gb_steps, "atom_steps_per_s": rate,
                                        "peak_rss_per_rank_GiB": memory.per_rank_gib()}
            print(f"Σ5 boundary, {len(gb)} atoms, {args.gb_steps} steps at -np 2: {rate:.0f} atom·steps/s, "
                  f"{len(gb) / rate:.1f} s per step; peak memory per rank "
                  f"{', '.join(f'{m:.2f}' for m in memory.per_rank_gib())} GiB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
