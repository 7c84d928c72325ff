"""Spin-lattice dynamics of NiO with the shipped model: LAMMPS (pair_style deepspin, 1 and 2 ranks) vs
SpinLatticeDynamics (1 and 2 threads), atom·steps per second in one run, and the cost of one model call.

    python benchmarks/bench_lammps_deepspin.py [--repeat 4 4 2] [--steps 10] [--repeats 2]
        [--out benchmarks/results/lammps_deepspin.json]

System: type-II antiferromagnetic NiO, 64-atom cubes repeated (default 2,048 atoms), spins canted by
0.2 rad, lattice at rest; the shipped model compressed (float64). LAMMPS: ``fix precession/spin`` +
``nve/spin lattice moving``, 0.1 fs, rate from its "Loop time" (start-up excluded); one model call per
step. SpinLatticeDynamics: the same time step, rate from ``run`` after one warm-up step; it evaluates the
model twice per step. Caution: LAMMPS's nve/spin does not
apply the model's magnetic forces to the spins (examples/lammps_spin_lattice.py), so its steps are cheaper
than a correct spin-lattice step and the comparison is one of cost per step, not of equal physics.
"Model call" times DeepSpinCalculator (fused CPU kernels) and the exported TorchScript module's
forward_lower (what LAMMPS runs, table path through autograd) on the same atoms, 1 thread.
Needs the LAMMPS route of ``bash examples/setup_lammps_deepspin.sh``.
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

import torch

ROOT = Path(__file__).resolve().parents[1]


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lammps_rate(atoms, model, route, workdir: Path, nprocs: int, steps: int) -> float:
    """Atom·steps per second of LAMMPS's loop (start-up excluded)."""
    from ase_deepspin.io.lammps import run_lammps, spin_lattice_input, write_spin_data
    from ase_deepspin.io.torchscript import write_lammps_model

    write_spin_data(workdir / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, workdir / "model.pth")
    skin = max(model.config.virtual_scale) * 1.3 + 0.5
    text = spin_lattice_input("system.data", "model.pth", route["plugin"], model.config.type_map, skin=skin,
                              steps=steps, rcut=model.config.rcut, dt_fs=0.1, thermo=steps)
    output = run_lammps(text, workdir, route["lmp"], nprocs=nprocs, env=route["env"], timeout=7200)
    loop = float(re.search(r"Loop time of ([0-9.eE+-]+) on", output).group(1))
    return len(atoms) * steps / loop


def ours_rate(atoms, model, threads: int, steps: int) -> float:
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.dynamics.llg import SpinLatticeDynamics

    torch.set_num_threads(threads)
    atoms = atoms.copy()
    atoms.calc = DeepSpinCalculator(model)
    dynamics = SpinLatticeDynamics(atoms, dt_fs=0.1)
    dynamics.run(1)
    start = time.perf_counter()
    dynamics.run(steps)
    return len(atoms) * steps / (time.perf_counter() - start)


def model_calls(atoms, model, repeats: int) -> dict:
    """Seconds per energy+forces+torques call: calculator vs exported module (same atoms, 1 thread)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_torchscript import lammps_inputs

    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.torchscript import scripted_model

    torch.set_num_threads(1)
    inputs = lammps_inputs(atoms, model.config.rcut + 1.8)[:4]
    module = scripted_model(model)
    module.forward_lower(*inputs)
    calc = DeepSpinCalculator(model)
    times = {"calculator_s": [], "torchscript_s": []}
    for k in range(repeats):
        spins = atoms.get_initial_magnetic_moments() * (1.0 + 1e-6 * (k + 1))  # a fresh evaluation each time
        atoms.set_initial_magnetic_moments(spins)
        atoms.calc = calc
        start = time.perf_counter()
        atoms.get_forces()
        calc.get_magnetic_torques(atoms)
        times["calculator_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        module.forward_lower(*inputs)
        times["torchscript_s"].append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, nargs=3, default=[4, 4, 2])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lammps_deepspin.json"))
    args = parser.parse_args()
    from ase_deepspin import compress_model
    from ase_deepspin.io.lammps import lammps_route
    from ase_deepspin.io import load_model

    route = lammps_route(required=True)
    atoms = _example("lammps_spin_lattice").canted_nio(args.repeat)
    model = compress_model(load_model(ROOT / "ase_deepspin" / "pretrained" / "nio.pt"))
    rates = {"lammps_np1": [], "lammps_np2": [], "ours_1thread": [], "ours_2threads": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # interleaved, so that machine noise hits every case alike
            rates["lammps_np1"].append(lammps_rate(atoms, model, route, Path(tmp), 1, args.steps))
            rates["lammps_np2"].append(lammps_rate(atoms, model, route, Path(tmp), 2, args.steps))
            rates["ours_1thread"].append(ours_rate(atoms, model, 1, args.steps))
            rates["ours_2threads"].append(ours_rate(atoms, model, 2, args.steps))
    calls = model_calls(atoms, model, args.repeats)
    result = {"atoms": len(atoms), "steps": args.steps, "dt_fs": 0.1,
              "model_calls_per_step": {"lammps": 1, "SpinLatticeDynamics": 2},
              "atom_steps_per_s": rates, "model_call": calls}
    print(f"NiO {len(atoms)} atoms, shipped model compressed (float64), {args.steps} steps x {args.repeats} repeats")
    for key, values in rates.items():
        print(f"  {key:14s} {min(values):9.0f} - {max(values):9.0f} atom·steps/s")
    ratio = [o / lmp for o, lmp in zip(rates["ours_1thread"], rates["lammps_np1"])]
    print(f"  SpinLatticeDynamics / LAMMPS, 1 core each: {min(ratio):.2f} - {max(ratio):.2f}")
    print(f"  one model call: calculator {min(calls['calculator_s']):.2f} - {max(calls['calculator_s']):.2f} s, "
          f"TorchScript module {min(calls['torchscript_s']):.2f} - {max(calls['torchscript_s']):.2f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
