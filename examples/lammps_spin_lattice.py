"""A short spin-lattice run of the shipped NiO model in LAMMPS (``fix precession/spin``, ``langevin/spin``,
``nve/spin``) under MPI, and a check of what LAMMPS's spin integrator does with the model's magnetic forces.

    python examples/lammps_spin_lattice.py [--np 2] [--steps 20] [--repeat 4 4 2] [--uncompressed]

1. Check: from canted spins at rest (T = 0, α = 0, no field), ``--check-steps`` steps of 0.1 fs in LAMMPS and
   in :class:`~ase_deepspin.dynamics.llg.SpinLatticeDynamics` with the same model; prints how far the spins
   turned in each. (LAMMPS 2025.7.22: not at all. Its ``fix nve/spin`` rebuilds each spin's field from SPIN
   pair styles and spin fixes only, so the magnetic forces of ``pair_style deepspin`` never reach the spins;
   ``min_style spin/lbfgs`` does use them, see examples/lammps_deepspin_gb.py.)
2. A thermal run: lattice velocities at 300 K, spin bath at 300 K with α = 0.01, 1 T along z: the thermo
   table of LAMMPS.

Under MPI, LAMMPS's nve/spin needs each rank's sub-domain at least 2 rcut wide in every direction (the
default 2,048 atoms, 33 × 33 × 17 Å, is the smallest such NiO cell for ``--np 2``). Needs the LAMMPS route
of ``bash examples/setup_lammps_deepspin.sh``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

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
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--check-steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, nargs=3, default=[4, 4, 2])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    route = lammps_route(required=True)
    model = load_model(resolve_model_path(args.model))
    if not args.uncompressed:
        model = compress_model(model)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="deepspin-lammps-sld-"))
    atoms = canted_nio(args.repeat)
    start_spins = atoms.get_initial_magnetic_moments()
    prism = write_spin_data(workdir / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, workdir / "model.pth")
    skin = max(model.config.virtual_scale) * float(np.linalg.norm(start_spins, axis=1).max()) + 0.5
    common = dict(data_file="system.data", model_file="model.pth", plugin=route["plugin"],
                  type_map=model.config.type_map, skin=skin, rcut=model.config.rcut, dt_fs=0.1)

    text = spin_lattice_input(steps=args.check_steps, dump_file="check.dump", **common)
    run_lammps(text, workdir, route["lmp"], nprocs=args.np, env=route["env"])
    lammps_spins = read_deepspin_dump(workdir / "check.dump", prism)["moments"]
    atoms.calc = DeepSpinCalculator(model)
    SpinLatticeDynamics(atoms, dt_fs=0.1).run(args.check_steps)
    ours = atoms.get_initial_magnetic_moments()
    print(f"{len(atoms)} atoms, {args.check_steps} steps of 0.1 fs from canted spins at rest (T = 0, α = 0):")
    print(f"  largest spin change  LAMMPS nve/spin {np.abs(lammps_spins - start_spins).max():.2e} μB,  "
          f"SpinLatticeDynamics {np.abs(ours - start_spins).max():.2e} μB")

    text = spin_lattice_input(steps=args.steps, temperature_K=300.0, alpha=0.01, field_T=(0.0, 0.0, 1.0),
                              lattice_temperature_K=300.0, thermo=max(1, args.steps // 10), **common)
    start = time.perf_counter()
    output = run_lammps(text, workdir, route["lmp"], nprocs=args.np, env=route["env"])
    wall = time.perf_counter() - start
    print(f"thermal run, 300 K lattice and spin bath (α = 0.01), 1 T along z, mpirun -np {args.np}:")
    print("\n".join(line for line in output.splitlines() if line.strip().split(" ")[0].isdigit()
                    or line.strip().startswith(("Step", "Loop time"))))
    print(f"  wall {wall:.0f} s including start-up; files in {workdir}")


if __name__ == "__main__":
    main()
