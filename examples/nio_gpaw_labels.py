"""Lattice labels for NiO from GPAW: what the DeltaSpin data never held (strain, shear, displaced oxygen).

The DeltaSpin NiO frames sit in one cubic cell with O never displaced, so a model trained on them extrapolates
its lattice. This labels AFM-II NiO with collinear PBE+U (U = 6 eV on Ni d, 400 eV plane waves, 2 k-points
per Å⁻¹: :func:`~ase_deepspin.calculators.collinear_dft.gpaw_labeller`'s defaults) in its 4-atom
rhombohedral magnetic cell. Stages (each reads what the one before wrote into --workdir):

* ``structures``: ``volume.xyz`` (cubic lattice constants 4.06–4.36 Å), ``shear.xyz`` (rhombohedral strain
  along [111] and tetragonal strain along [001], ±1 and ±2 % at a = 4.186 Å, the DeltaSpin cell) and
  ``displaced.xyz`` (every atom displaced at random by 0.05 Å RMS per component, about NiO at 300 K).
* ``label``: ``ase-deepspin label`` on each file, into the npy systems ``volume``, ``shear``, ``displaced``
  (about 90 s per frame on one core; rerun to continue).
* ``eos``: GPAW's own answers from the labels: the equation of state (Birch–Murnaghan: a0, B) and the energy
  of each shear against the cubic cell.

    python examples/nio_gpaw_labels.py structures [--workdir runs/nio_gpaw]
    python examples/nio_gpaw_labels.py label
    python examples/nio_gpaw_labels.py eos

Train with them beside the DeltaSpin data by naming these systems in ``training_data.relative_energy``: GPAW's
energies have another zero than VASP's. GPAW's equilibrium at these settings (a0 4.24 Å) lies 1.3 % above the
DeltaSpin cell (4.186 Å); PBEsol setups would close it but are not in GPAW's data package.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from ase.io import write

from ase_deepspin.build import nio_afm
from ase_deepspin.io.frames import read_frames

A_DELTASPIN = 4.186  # Å: the cubic lattice constant of the DeltaSpin frames
KINDS = ("volume", "shear", "displaced")


def strained(strain: np.ndarray):
    """AFM-II NiO (4-atom cell, a = 4.186 Å) under the symmetric strain ``strain`` (3, 3)."""
    atoms = nio_afm(a=A_DELTASPIN)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return atoms


def structures(workdir: Path, seed: int = 0) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    write(workdir / "volume.xyz", [nio_afm(a=a) for a in np.linspace(4.06, 4.36, 7)], format="extxyz")
    rhombohedral = (np.ones((3, 3)) - np.eye(3)) / 2  # ε_xy = ε_yz = ε_zx: stretches along [111]
    tetragonal = np.diag([-0.5, -0.5, 1.0])
    write(workdir / "shear.xyz", [strained(e * shape) for shape in (rhombohedral, tetragonal)
                                  for e in (-0.02, -0.01, 0.01, 0.02)], format="extxyz")
    rng = np.random.default_rng(seed)
    displaced = []
    for _ in range(6):
        atoms = nio_afm(a=A_DELTASPIN)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        displaced.append(atoms)
    write(workdir / "displaced.xyz", displaced, format="extxyz")


def label(workdir: Path) -> None:
    for kind in KINDS:
        subprocess.run([sys.executable, "-m", "ase_deepspin.cli", "label", str(workdir / f"{kind}.xyz"), "-o",
                        str(workdir / kind), "--type-map", "Ni", "O"], check=True)


def eos(workdir: Path) -> dict:
    """a0 (Å), B (GPa) and the shear energies (meV/atom against the cubic cell at 4.186 Å) of the labels."""
    from ase.eos import EquationOfState
    from ase.units import GPa

    volume = read_frames(workdir / "volume")
    fit = EquationOfState([abs(np.linalg.det(f.cell)) / len(f) for f in volume],
                          [f.energy / len(f) for f in volume], eos="birchmurnaghan")
    v0, e0, b = fit.fit()
    a0 = (4 * 2 * v0) ** (1 / 3)  # 8 atoms per cubic cell of a³
    cubic = fit.func(A_DELTASPIN**3 / 8, *fit.eos_parameters)
    shears = [f.energy / len(f) for f in read_frames(workdir / "shear")]
    result = {"a0_A": a0, "bulk_modulus_GPa": b / GPa, "shear_meV_per_atom": {
        f"{name} {e:+.0%}": 1e3 * (energy - cubic)
        for (name, e), energy in zip([(n, e) for n in ("rhombohedral", "tetragonal") for e in (-0.02, -0.01, 0.01, 0.02)],
                                     shears)}}
    print(f"GPAW PBE+U: a0 {a0:.4f} Å, B {b / GPa:.0f} GPa")
    for name, value in result["shear_meV_per_atom"].items():
        print(f"  {name}: {value:+.2f} meV/atom against the cubic cell")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("structures", "label", "eos"))
    parser.add_argument("--workdir", type=Path, default=Path("runs/nio_gpaw"))
    args = parser.parse_args(argv)
    {"structures": structures, "label": label, "eos": eos}[args.stage](args.workdir)


if __name__ == "__main__":
    main()
