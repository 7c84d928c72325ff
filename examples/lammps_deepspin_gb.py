"""A model trained here, run in LAMMPS with MPI (DeePMD-kit's ``pair_style deepspin``) on the NiO Σ5 grain boundary.

Route: ase-deepspin model -> ``.dp`` (``ase-deepspin convert``) -> ``.pth`` (DeePMD-kit's
``dp convert-backend``) -> LAMMPS ``pair_style deepspin`` under ``mpirun -np 2``: one energy/force/torque
evaluation and a short ``min_style spin/lbfgs`` spin minimisation, both checked against DeepSpinCalculator.

Needs the environment of ``examples/setup_lammps_deepspin.sh`` (it prints the three variables to export):
ASE_DEEPSPIN_DEEPMD_PYTHON, ASE_DEEPSPIN_LMP, ASE_DEEPSPIN_LMP_LIBRARY_PATH.

    python examples/lammps_deepspin_gb.py --model MODEL.pt [--np 2] [--min-steps 3] [--workdir DIR]

Measured here (shared 2-core machine, 23 GB): with the model of examples/nio_train_small.yaml,
``--min-steps 3`` took 671 s (five evaluations of 11,328 atoms, ~3.7 GB per rank); LAMMPS and
DeepSpinCalculator agreed to 2e-15 (energy), 4e-13 (forces) and 3e-13 (torques) relative. The shipped
model cannot take this route: its spin baseline has no DeePMD-kit counterpart (and its wider nets
needed more than 8 GB per rank in DeePMD-kit's pair style on this boundary). Train a model without
``spin.baseline``, as examples/nio_train_small.yaml does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.neighborlist import neighbor_list

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.calculator import resolve_model_path
from ase_deepspin.data import read_lammps_spin
from ase_deepspin.lammps_spin import (
    deepspin_input,
    printed_value,
    read_deepspin_dump,
    run_lammps,
    write_spin_data,
)
from ase_deepspin.model import load_model
from ase_deepspin.model.deepmd import write_deepmd

GB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nio-gb-sigma5" / "init.data"


def lammps_environment() -> dict:
    """Paths of the DeePMD-kit/LAMMPS route from the environment; raises KeyError naming what is missing."""
    for key in ("ASE_DEEPSPIN_DEEPMD_PYTHON", "ASE_DEEPSPIN_LMP", "ASE_DEEPSPIN_LMP_LIBRARY_PATH"):
        if not os.environ.get(key):
            raise KeyError(f"{key} is not set; run examples/setup_lammps_deepspin.sh and export what it prints")
    python = os.environ["ASE_DEEPSPIN_DEEPMD_PYTHON"]
    library_path = os.environ["ASE_DEEPSPIN_LMP_LIBRARY_PATH"]
    plugin = next(Path(p) / "libdeepmd_lmpplugin.so" for p in library_path.split(":")
                  if (Path(p) / "libdeepmd_lmpplugin.so").is_file())
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.update(LD_LIBRARY_PATH=library_path, OMP_NUM_THREADS="1", DP_INTRA_OP_PARALLELISM_THREADS="1",
               DP_INTER_OP_PARALLELISM_THREADS="1",
               # large tensors from mmap, returned on free: glibc's growing threshold otherwise lets
               # each rank's heap grow by GBs over a spin minimisation of the 11k-atom boundary
               MALLOC_MMAP_THRESHOLD_="1048576")
    return {"python": python, "lmp": os.environ["ASE_DEEPSPIN_LMP"], "plugin": str(plugin), "env": env}


def export_pth(model, workdir: Path, python: str) -> Path:
    """The model as a DeePMD-kit frozen PyTorch model, through .dp and ``dp convert-backend``."""
    write_deepmd(model, workdir / "model.dp")
    subprocess.run([python, "-m", "deepmd", "convert-backend", "model.dp", "model.pth"], cwd=workdir, check=True,
                   capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return workdir / "model.pth"


def grain_boundary(path=GB, overlap: float = 0.05):
    """The Σ5 NiO boundary as in the paper's run: atoms closer than ``overlap`` Å to an earlier one removed,
    Ni moments from the file (μB), O moments zero."""
    atoms = read_lammps_spin(path, ["Ni", "O"], magnetic=["Ni"])
    i, j = neighbor_list("ij", atoms, overlap)
    del atoms[np.unique(np.maximum(i, j))]
    return atoms


def relative(a, b) -> float:
    """max |a − b| / max |b|."""
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def compare(atoms, model, workdir: Path, route: dict, nprocs: int, min_steps: int) -> dict:
    """LAMMPS (pair_style deepspin) vs DeepSpinCalculator on ``atoms``: relative differences and timings."""
    cfg = model.config
    eta_s = max(v * float(np.max(np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1)))
                for v in cfg.virtual_scale)
    prism = write_spin_data(workdir / "system.data", atoms, cfg.type_map)
    pth = export_pth(model, workdir, route["python"])
    text = deepspin_input("system.data", pth.name, route["plugin"], cfg.type_map, skin=eta_s + 0.3,
                          minimize_steps=min_steps)
    start = time.perf_counter()
    output = run_lammps(text, workdir, route["lmp"], nprocs=nprocs, env=route["env"])
    lammps_s = time.perf_counter() - start
    got = read_deepspin_dump(workdir / "deepspin.dump", prism)

    atoms.calc = DeepSpinCalculator(model)
    start = time.perf_counter()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    torques = atoms.calc.get_magnetic_torques(atoms)
    ase_s = time.perf_counter() - start
    result = {"atoms": len(atoms), "energy_eV": energy,
              "energy": abs(printed_value(output, "DEEPSPIN_ENERGY") - energy) / abs(energy),
              "forces": relative(got["forces"], forces), "torques": relative(got["torques"], torques),
              "lammps_wall_s": lammps_s, "ase_wall_s": ase_s}
    if min_steps > 0:
        relaxed = read_deepspin_dump(workdir / "deepspin.dump.min", prism)
        final = atoms.copy()
        final.set_initial_magnetic_moments(relaxed["moments"])
        final.calc = DeepSpinCalculator(model)
        e_min = printed_value(output, "DEEPSPIN_MIN_ENERGY")
        result.update(min_energy_drop_eV=energy - e_min,
                      min_energy=abs(e_min - final.get_potential_energy()) / abs(e_min),
                      min_torques=relative(relaxed["torques"], final.calc.get_magnetic_torques(final)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model without spin baseline (DeePMD-kit cannot express one)")
    parser.add_argument("--np", type=int, default=2)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    route = lammps_environment()
    model = load_model(resolve_model_path(args.model))
    atoms = grain_boundary()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="deepspin-lammps-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = compare(atoms, model, workdir, route, args.np, args.min_steps)
    print(f"NiO Σ5 grain boundary, {result['atoms']} atoms, LAMMPS pair_style deepspin with mpirun -np {args.np}")
    print(f"  energy {result['energy_eV']:.6f} eV; relative differences to DeepSpinCalculator:")
    print(f"  energy {result['energy']:.2e}  forces {result['forces']:.2e}  torques {result['torques']:.2e}")
    if args.min_steps:
        print(f"  after {args.min_steps} spin/lbfgs steps: energy −{result['min_energy_drop_eV']:.4f} eV, "
              f"energy {result['min_energy']:.2e}, torques {result['min_torques']:.2e} vs DeepSpinCalculator")
    print(f"  wall: LAMMPS (incl. model load, {args.min_steps} min steps) {result['lammps_wall_s']:.0f} s, "
          f"DeepSpinCalculator one evaluation {result['ase_wall_s']:.0f} s; files in {workdir}")


if __name__ == "__main__":
    main()
