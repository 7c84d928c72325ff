"""Spin-lattice dynamics of the shipped NiO model in LAMMPS under MPI (this package's ``fix sib/spin``), checked
against :class:`~ase_deepspin.dynamics.llg.SpinLatticeDynamics` with the same model and start.

    python examples/lammps_spin_lattice.py [--np 2] [--check-steps 100] [--steps 200] [--repeat 1 1 1] [--uncompressed]

1. Check: canted spins and 300 K lattice velocities, NVE, ``--check-steps`` steps of 0.2 fs in LAMMPS and in
   SpinLatticeDynamics; prints the largest difference in positions (Å) and spins (μB) at the end, how far the
   spins turned, and each run's energy drift.
2. A thermal run: spin bath at 300 K (α = 0.01), lattice bath at 300 K (friction 0.01/fs), 1 T along z: the
   thermo table of LAMMPS.

``fix sib/spin`` is built from ``lammps/`` by ``bash examples/setup_lammps_deepspin.sh``; LAMMPS's own
``fix nve/spin`` would not move these spins (it rebuilds their field from SPIN pair styles only).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.md.velocitydistribution import thermalize_momenta

from ase_deepspin import DeepSpinCalculator, compress_model
from ase_deepspin.build import nio_afm
from ase_deepspin.dynamics.llg import SpinLatticeDynamics
from ase_deepspin.io.lammps import lammps_route, read_deepspin_dump, run_lammps, spin_lattice_input, write_spin_data
from ase_deepspin.io import load_model
from ase_deepspin.io.model_file import resolve_model_path
from ase_deepspin.io.torchscript import write_lammps_model


def canted_nio(repeat, angle_rad: float = 0.2, seed: int = 0):
    """Type-II antiferromagnetic NiO (64-atom cubes repeated), every Ni spin turned by ``angle_rad`` about a
    random axis, so that the model's torques are large."""
    atoms = nio_afm(cubic=True).repeat(tuple(repeat))
    spins = atoms.get_initial_magnetic_moments()
    rng = np.random.default_rng(seed)
    for i in np.flatnonzero(np.linalg.norm(spins, axis=1) > 0):
        axis = np.cross(spins[i], rng.normal(size=3))
        axis /= np.linalg.norm(axis)
        spins[i] = spins[i] * np.cos(angle_rad) + np.cross(axis, spins[i]) * np.sin(angle_rad)
    atoms.set_initial_magnetic_moments(spins)
    return atoms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nio")
    parser.add_argument("--uncompressed", action="store_true")
    parser.add_argument("--np", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--check-steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, nargs=3, default=[1, 1, 1])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    route = lammps_route(required=True)
    model = load_model(resolve_model_path(args.model))
    if not args.uncompressed:
        model = compress_model(model)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="deepspin-lammps-sld-"))
    atoms = canted_nio(args.repeat)
    thermalize_momenta(atoms, temperature_K=300.0, rng=np.random.default_rng(0))
    atoms.wrap()
    start_spins = atoms.get_initial_magnetic_moments()
    prism = write_spin_data(workdir / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, workdir / "model.pth")
    common = dict(data_file="system.data", model_file="model.pth", plugin=route["plugin"],
                  sib_plugin=route["sib_plugin"], type_map=model.config.type_map, skin=1.0, dt_fs=0.2)

    text = spin_lattice_input(steps=args.check_steps, thermo=args.check_steps, dump_file="check.dump", **common)
    output = run_lammps(text, workdir, route["lmp"], nprocs=args.np, env=route["env"])
    energies = [float(line.split()[5]) for line in output.splitlines()
                if line.split()[:1] in (["0"], [str(args.check_steps)]) and len(line.split()) == 6]
    lammps = read_deepspin_dump(workdir / "check.dump", prism)
    atoms.calc = DeepSpinCalculator(model)
    dynamics = SpinLatticeDynamics(atoms, dt_fs=0.2)
    e_start = dynamics.total_energy()
    dynamics.run(args.check_steps)
    ours = atoms.get_initial_magnetic_moments()
    print(f"{len(atoms)} atoms, {args.check_steps} NVE steps of 0.2 fs from canted spins and 300 K velocities, "
          f"LAMMPS under mpirun -np {args.np}:")
    print(f"  spins turned by up to {np.abs(ours - start_spins).max():.3f} μB; LAMMPS - SpinLatticeDynamics: "
          f"positions {np.abs(lammps['positions'] - atoms.positions).max():.1e} Å, "
          f"spins {np.abs(lammps['moments'] - ours).max():.1e} μB")
    print(f"  energy drift: LAMMPS {energies[-1] - energies[0]:+.2e} eV, "
          f"SpinLatticeDynamics {dynamics.total_energy() - e_start:+.2e} eV")

    text = spin_lattice_input(steps=args.steps, temperature_K=300.0, alpha=0.01, field_T=(0.0, 0.0, 1.0),
                              lattice_friction_per_fs=0.01, thermo=max(1, args.steps // 10), **common)
    start = time.perf_counter()
    output = run_lammps(text, workdir, route["lmp"], nprocs=args.np, env=route["env"])
    wall = time.perf_counter() - start
    print(f"thermal run, 300 K spin bath (α = 0.01) and lattice bath (0.01/fs), 1 T along z, mpirun -np {args.np}:")
    print("\n".join(line for line in output.splitlines() if line.strip().split(" ")[0].isdigit()
                    or line.strip().startswith(("Step", "Loop time"))))
    print(f"  wall {wall:.0f} s including start-up; files in {workdir}")


if __name__ == "__main__":
    main()
