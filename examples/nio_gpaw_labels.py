"""Lattice labels for NiO from GPAW: what the DeltaSpin data never held (strain, shear, displaced oxygen).

The DeltaSpin NiO frames sit in one cubic cell with O never displaced, so a model trained on them extrapolates
its lattice. This labels AFM-II NiO with collinear PBE+U (U = 6 eV on Ni d, 400 eV plane waves:
:func:`~ase_deepspin.calculators.collinear_dft.gpaw_labeller`'s defaults) in its 4-atom rhombohedral
magnetic cell, on one Γ-centred 6×6×3 k-point grid for every frame (:data:`SETTINGS`: a grid from a
density would change with the volume and, at 5×6×3, break the cell's symmetry). Stages (each reads what the one before wrote into --workdir):

* ``structures``: ``volume.xyz`` (cubic lattice constants 4.06–4.36 Å), ``shear.xyz`` (rhombohedral strain
  along [111] and tetragonal strain along [001], ±1 and ±2 % at a = 4.186 Å, the DeltaSpin cell) and
  ``displaced.xyz`` (every atom displaced at random by 0.05 Å RMS per component, about NiO at 300 K).
* ``label``: ``ase-deepspin label`` on each file, into the npy systems ``volume``, ``shear``, ``displaced``
  (about 90 s per frame on one core; rerun to continue).
* ``phonons``: Γ-point phonons of the 4-atom cell at a = 4.186 Å by finite displacements (phonopy, 0.01 Å,
  the magnetic space group leaves 4 displacements): GPAW's frequencies (``phonons.json``) and the displaced
  cells as the npy system ``phonon`` (about 8 minutes on one core).
* ``eos``: GPAW's own answers from the labels: the equation of state (Birch–Murnaghan: a0, B) and the energy
  of each shear against the cubic cell.
* ``compare``: the same answers from models (default: the shipped one) on the same structures (equation of
  state, shears, Γ phonons), their forces against GPAW's on the displaced cells, and their RMSE on the 20
  DeltaSpin frames the shipped model held out; ``compare.json``.

    python examples/nio_gpaw_labels.py structures [--workdir runs/nio_gpaw]
    python examples/nio_gpaw_labels.py label
    python examples/nio_gpaw_labels.py phonons
    python examples/nio_gpaw_labels.py eos
    python examples/nio_gpaw_labels.py compare [--model nio runs/nio_gpaw_train/model.pt]

Train with them beside the DeltaSpin data by naming these systems in ``training_data.relative_energy``: GPAW's
energies have another zero than VASP's. GPAW's equilibrium at these settings (a0 4.24 Å) lies 1.3 % above the
DeltaSpin cell (4.186 Å); PBEsol setups would close it but are not in GPAW's data package.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from ase.io import write

from ase_deepspin.build import nio_afm
from ase_deepspin.io.frames import read_frames

A_DELTASPIN = 4.186  # Å: the cubic lattice constant of the DeltaSpin frames
SETTINGS = {"kpoints": [6, 6, 3]}  # gpaw_labeller's keyword arguments
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


def label(workdir: Path, kinds=KINDS) -> None:
    (workdir / "gpaw.yaml").write_text(json.dumps(SETTINGS))  # JSON is YAML
    for kind in kinds:
        subprocess.run([sys.executable, "-m", "ase_deepspin.cli", "label", str(workdir / f"{kind}.xyz"), "-o",
                        str(workdir / kind), "--type-map", "Ni", "O", "--settings", str(workdir / "gpaw.yaml")],
                       check=True)


def gamma_phonons(calc):
    """Γ-point frequencies (THz, ascending) of the 4-atom AFM-II cell at a = 4.186 Å with ``calc``, and the
    phonopy object (its displaced cells, forces and energies)."""
    from ase_deepspin.analysis.phonons import compute_phonons

    # forces as computed (no residual subtracted): the ideal cell's vanish by symmetry, and they are labels
    phonon = compute_phonons(nio_afm(a=A_DELTASPIN), np.eye(3, dtype=int), calc, subtract_residual_forces=False,
                             progress=False)
    return np.sort(phonon.run_qpoints([[0.0, 0.0, 0.0]]).frequencies[0]), phonon


def phonons(workdir: Path) -> np.ndarray:
    from ase_deepspin.calculators.collinear_dft import gpaw_labeller
    from ase_deepspin.io.frames import Frame, write_deepmd_npy

    labeller = gpaw_labeller(**SETTINGS)
    frequencies, phonon = gamma_phonons(labeller)
    unit = nio_afm(a=A_DELTASPIN)
    frames = [Frame(symbols=np.array(cell.symbols), positions=cell.positions, cell=cell.cell, pbc=np.ones(3, bool),
                    spins=unit.get_initial_magnetic_moments(), energy=float(energy), forces=np.asarray(forces),
                    torques=np.zeros((len(unit), 3)), torque_labels="transverse", labeller=labeller.method)
              for cell, forces, energy in zip(phonon.supercells_with_displacements, phonon.forces,
                                              phonon.supercell_energies)]
    write_deepmd_npy(workdir / "phonon", frames, ["Ni", "O"])
    (workdir / "phonons.json").write_text(json.dumps({"gamma_THz": frequencies.tolist()}))
    print("GPAW Γ frequencies (THz): " + " ".join(f"{f:.3f}" for f in frequencies))
    return frequencies


def answers(volume: list, shear: list, who: str) -> dict:
    """a0 (Å), B (GPa) and the shear energies (meV/atom against the cubic cell at 4.186 Å, from the fit) of
    frames labelled with energies (GPAW's, or a model's on the same structures)."""
    from ase.eos import EquationOfState
    from ase.units import GPa

    fit = EquationOfState([abs(np.linalg.det(f.cell)) / len(f) for f in volume],
                          [f.energy / len(f) for f in volume], eos="birchmurnaghan")
    v0, e0, b = fit.fit()
    a0 = (8 * v0) ** (1 / 3)  # 8 atoms per cubic cell of a³
    cubic = fit.func(A_DELTASPIN**3 / 8, *fit.eos_parameters)
    names = [f"{n} {e:+.0%}" for n in ("rhombohedral", "tetragonal") for e in (-0.02, -0.01, 0.01, 0.02)]
    result = {"a0_A": a0, "bulk_modulus_GPa": b / GPa,
              "shear_meV_per_atom": {name: 1e3 * (f.energy / len(f) - cubic) for name, f in zip(names, shear)}}
    print(f"{who}: a0 {a0:.4f} Å, B {b / GPa:.0f} GPa; shears (meV/atom against cubic): "
          + ", ".join(f"{name} {value:+.2f}" for name, value in result["shear_meV_per_atom"].items()))
    return result


def eos(workdir: Path) -> dict:
    return answers(read_frames(workdir / "volume"), read_frames(workdir / "shear"), "GPAW PBE+U")


def compare(workdir: Path, models: list[str]) -> dict:
    import dataclasses

    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.frames import split_frames

    results = {"gpaw": eos(workdir)}
    if (workdir / "phonons.json").is_file():
        results["gpaw"] |= json.loads((workdir / "phonons.json").read_text())
    held_out = split_frames(read_frames(Path(__file__).resolve().parents[1] / "../shared/data/nio-deltaspin"), 20, 0)[1]
    for name in models:
        calc = DeepSpinCalculator(name)

        def relabel(frames):
            out = []
            for f in frames:
                atoms = f.to_atoms()
                atoms.calc = calc
                out.append(dataclasses.replace(f, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                               torques=calc.get_magnetic_torques(atoms)))
            return out

        result = answers(relabel(read_frames(workdir / "volume")), relabel(read_frames(workdir / "shear")), name)
        if (workdir / "phonons.json").is_file():
            reference = np.array(json.loads((workdir / "phonons.json").read_text())["gamma_THz"])[3:]
            optical = gamma_phonons(calc)[0][3:]  # the three acoustic modes are zero in both
            result["gamma_THz"] = optical.tolist()
            result["gamma_relative_error"] = (optical / reference - 1).tolist()
            print("  Γ optical frequencies (THz), model / GPAW: " + ", ".join(
                f"{m:.2f}/{g:.2f}" for m, g in zip(optical, reference)))
        displaced = read_frames(workdir / "displaced")
        predicted = relabel(displaced)
        result["displaced_force_rmse_meV_per_A"] = 1e3 * float(np.sqrt(np.mean(
            [np.mean((p.forces - f.forces) ** 2) for p, f in zip(predicted, displaced)])))
        predicted = relabel(held_out)
        magnetic = [f.symbols == "Ni" for f in held_out]
        result["deltaspin_held_out"] = {
            "energy_meV_per_atom": 1e3 * float(np.sqrt(np.mean([((p.energy - f.energy) / len(f)) ** 2
                                                                for p, f in zip(predicted, held_out)]))),
            "forces_meV_per_A": 1e3 * float(np.sqrt(np.mean([np.mean((p.forces - f.forces) ** 2)
                                                             for p, f in zip(predicted, held_out)]))),
            "torques_meV_per_muB": 1e3 * float(np.sqrt(np.mean([np.mean((p.torques - f.torques)[m] ** 2)
                                                                for p, f, m in zip(predicted, held_out, magnetic)])))}
        print(f"  forces on the displaced cells against GPAW: {result['displaced_force_rmse_meV_per_A']:.1f} meV/Å; "
              "DeltaSpin held-out: " + ", ".join(f"{k} {v:.3f}" for k, v in result["deltaspin_held_out"].items()))
        results[name] = result
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("structures", "label", "phonons", "eos", "compare"))
    parser.add_argument("--workdir", type=Path, default=Path("runs/nio_gpaw"))
    parser.add_argument("--model", nargs="+", default=["nio"], help="models to compare (compare stage)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="what to label (label stage)")
    args = parser.parse_args(argv)
    if args.stage == "label":
        label(args.workdir, args.kinds)
    elif args.stage == "compare":
        result = compare(args.workdir, args.model)
        (args.workdir / "compare.json").write_text(json.dumps(result, indent=1))
    else:
        {"structures": structures, "label": label, "phonons": phonons, "eos": eos}[args.stage](args.workdir)


if __name__ == "__main__":
    main()
