"""What a model does where the DFT labels have an exact symmetry: rotating the spins alone (no spin-orbit
coupling in the NiO and Fe DeltaSpin data), and the stability of NiO's ground state.

- NiO (``--nio MODEL``): the spin Hessian on the sphere at type-II order (64-atom cube, a = 4.186 Å, the
  data's cell, and 4.17 Å; :func:`ase_deepspin.analysis.stability.spin_stability`): its lowest eigenvalues
  (eV/rad²) and how many are negative (an unstable ground state); the energy of ideal NiO with all spins
  turned together to random directions (μeV/Ni; zero for the labels); and a spin relaxation from random
  cantings (0.3 rad): the staggered order it ends in (1: type-II) and its energy above type-II (meV/Ni).
- Fe (``--fe MODEL``): real frames of every FCC-Fe DeltaSpin system with all spins turned together by random
  rotations: RMS changes of E (meV/atom), F (meV/Å) and ω − Rω (meV/μB); zero for the labels.

    python benchmarks/bench_spin_symmetry.py [--nio nio] [--fe fe] [--out spin_symmetry.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def nio_report(model: str, a: float, rotations: int = 6, canting_rad: float = 0.3) -> dict:
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.analysis.stability import spin_stability
    from ase_deepspin.build import nio_afm
    from ase_deepspin.dynamics.minimize import relax_spins
    from ase_deepspin.spins import unit_vectors

    atoms = nio_afm(a=a, moment=1.2735, cubic=True)
    calc = DeepSpinCalculator(model)
    atoms.calc = calc
    spins = atoms.get_initial_magnetic_moments()
    magnetic = np.flatnonzero(np.linalg.norm(spins, axis=1) > 0)
    eigenvalues = spin_stability(atoms).eigenvalues
    energy = atoms.get_potential_energy()
    turned = []
    for seed in range(rotations):
        trial = atoms.copy()
        trial.set_initial_magnetic_moments(spins @ Rotation.random(random_state=seed).as_matrix().T)
        trial.calc = calc
        turned.append(1e6 * (trial.get_potential_energy() - energy) / len(magnetic))
    # spin relaxation from random cantings: does it come back to type-II order (staggered order 1)?
    reference, _ = unit_vectors(spins[magnetic])
    signs = np.sign(reference @ reference[0])
    trial = atoms.copy()
    rng = np.random.default_rng(0)
    canted = spins.copy()
    canted[magnetic] += canting_rad * np.linalg.norm(spins[magnetic], axis=1, keepdims=True) \
        * rng.normal(size=(len(magnetic), 3))
    canted[magnetic] *= (np.linalg.norm(spins[magnetic], axis=1) / np.linalg.norm(canted[magnetic], axis=1))[:, None]
    trial.set_initial_magnetic_moments(canted)
    trial.calc = calc
    relaxation = relax_spins(trial, tmax=1e-5, steps=3000)
    relaxed, _ = unit_vectors(trial.get_initial_magnetic_moments()[magnetic])
    return {"model": model, "a_A": a, "hessian_lowest_eV_per_rad2": eigenvalues[:6].tolist(),
            "hessian_negative": int(np.sum(eigenvalues < -1e-8 * np.abs(eigenvalues).max())),
            "rotated_energy_change_ueV_per_Ni": turned,
            "relaxed_from_canting": {"canting_rad": canting_rad, "converged": relaxation.converged,
                                     "minimum": relaxation.minimum, "escapes": relaxation.escapes,
                                     "staggered_order": float(np.linalg.norm(signs @ relaxed) / len(magnetic)),
                                     "energy_above_type_II_meV_per_Ni": float(
                                         1e3 * (trial.get_potential_energy() - energy) / len(magnetic))}}


def fe_report(model: str, rotations: int = 2, every: int = 10) -> dict:
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.frames import read_deepmd_npy

    calc = DeepSpinCalculator(model)
    de, df, dw = [], [], []
    for system in sorted(p for p in (SHARED / "fe-deltaspin").iterdir() if (p / "type.raw").exists()):
        for frame in read_deepmd_npy(system)[::every]:
            atoms = frame.to_atoms()
            atoms.calc = calc
            e0, f0, w0 = atoms.get_potential_energy(), atoms.get_forces(), calc.get_magnetic_torques(atoms)
            for seed in range(rotations):
                rot = Rotation.random(random_state=seed).as_matrix()
                trial = atoms.copy()
                trial.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments() @ rot.T)
                trial.calc = calc
                de.append((trial.get_potential_energy() - e0) / len(atoms))
                df.append(trial.get_forces() - f0)
                dw.append(calc.get_magnetic_torques(trial) - w0 @ rot.T)
    rms = lambda x: float(1e3 * np.sqrt(np.mean(np.square(np.concatenate([np.ravel(v) for v in x])))))  # noqa: E731
    return {"model": model, "frames_x_rotations": len(de), "energy_rms_meV_per_atom": rms(de),
            "energy_max_meV_per_atom": float(1e3 * np.abs(de).max()), "forces_rms_meV_per_A": rms(df),
            "torques_rms_meV_per_muB": rms(dw)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nio", nargs="*", default=["nio"], help="NiO model files or shipped names")
    parser.add_argument("--fe", nargs="*", default=["fe"], help="Fe model files or shipped names")
    parser.add_argument("--out", default="spin_symmetry.json")
    args = parser.parse_args()
    rows = []
    for model in args.nio:
        for a in (4.186, 4.17):  # the data's cell; experiment
            rows.append(nio_report(model, a))
            print(json.dumps(rows[-1]))
    for model in args.fe:
        rows.append(fe_report(model))
        print(json.dumps(rows[-1]))
    out = Path(__file__).parent / "results" / args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%F"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
