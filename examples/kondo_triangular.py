"""An itinerant magnet learned from its electrons: the s–d exchange model on the triangular lattice.

The oracle is `SdExchangeCalculator` (electrons hopping with t = 1 eV between nearest neighbours of a
triangular lattice, a = 2.5 Å, coupled to unit classical spins by J = 2 eV/μB, a quarter of the 2N
one-electron states filled, k_B T_e = 0.01 eV), where the four-sublattice tetrahedral order is the lowest of
the ferromagnetic, 120°, stripe and tetrahedral states. Its spin torques come from exact diagonalisation
(cost N³) and are long-ranged and many-body. Stages (each reads what the one before wrote into --workdir):

* ``data``: labelled frames of 12 × 12 lattices (144 sites) on the frozen lattice, without forces: random
  spins, and snapshots of oracle-driven LLG (α = 0.1, 0.02 fs steps) at three bath temperatures from random
  and tetrahedral starts; DeePMD-kit npy systems in WORKDIR/data/<kind>.
* ``train``: ``ase-deepspin train`` with ``examples/kondo_train.yaml`` (the descriptor of spin invariants:
  energies and torques only).
* ``ground``: spins relaxed (``relax_spins``) from random starts with the model and with the oracle: the
  oracle's energy of each result, the mean angle between neighbours (109.5° in the tetrahedral order) and the
  scalar chirality of the triangles (±0.770 on every triangle there).
* ``test``: the model against the oracle on the held-out frames, per kind: RMSE against the label RMS and R²
  for energies per site, torques and their part across S (the oracle's torques are mostly along S, J times the
  local electron polarisation, which unit-length dynamics never sees).

    python examples/kondo_triangular.py data [--workdir runs/kondo] [--frames 40]
    python examples/kondo_triangular.py train
    python examples/kondo_triangular.py test [--model runs/kondo/model.pt]
    python examples/kondo_triangular.py ground [--starts 3]
"""

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ase_deepspin.build import tetrahedral_spins, triangular_lattice
from ase_deepspin.calculators import SdExchangeCalculator
from ase_deepspin.dynamics import SpinLatticeDynamics
from ase_deepspin.io.frames import frame_system, read_frames, write_deepmd_npy
from ase_deepspin.training.active import label

SIZE, SPACING = (12, 12), 2.5
ORACLE = dict(hopping_eV=1.0, coupling_eV_per_muB=2.0, cutoff=3.0, cutoff_width=0.3, filling=0.25, smearing_eV=0.01)
TEMPERATURES_K = (100.0, 400.0, 1600.0)
HERE = Path(__file__).resolve().parent


def oracle() -> SdExchangeCalculator:
    return SdExchangeCalculator(**ORACLE)


def random_spins(rng, n: int) -> np.ndarray:
    spins = rng.normal(size=(n, 3))
    return spins / np.linalg.norm(spins, axis=1, keepdims=True)


def labelled(atoms, calc, source: str):
    """The oracle's energy and torques of ``atoms`` as a frame without forces (a frozen lattice)."""
    return dataclasses.replace(label(atoms, calc), forces=None, source=source)


def make_data(workdir: Path, n_frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lattice = triangular_lattice(SIZE, SPACING)
    calc = oracle()
    kinds = {"random": []}
    for k in range(n_frames):
        lattice.set_initial_magnetic_moments(random_spins(rng, len(lattice)))
        kinds["random"].append(labelled(lattice, calc, f"random#{k}"))
    for temperature in TEMPERATURES_K:
        frames = kinds[f"llg_{temperature:.0f}K"] = []
        for start in ("random", "tetrahedral"):
            atoms = lattice.copy()
            atoms.set_initial_magnetic_moments(tetrahedral_spins(SIZE) if start == "tetrahedral"
                                               else random_spins(rng, len(atoms)))
            atoms.calc = calc
            md = SpinLatticeDynamics(atoms, dt_fs=0.02, alpha=0.1, temperature_K=temperature, lattice="frozen",
                                     rng=np.random.default_rng(int(rng.integers(1 << 30))))
            for k in range(n_frames // 2):
                md.run(25)
                frames.append(labelled(atoms, calc, f"llg {temperature:.0f} K from {start}#{k}"))
        print(f"{temperature:.0f} K: {len(frames)} frames", flush=True)
    for kind, frames in kinds.items():
        write_deepmd_npy(workdir / "data" / kind, frames, ["Fe"])
    print(f"frames in {workdir / 'data'}: " + ", ".join(f"{k} {len(v)}" for k, v in kinds.items()))


def test(workdir: Path, model: Path) -> None:
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.frames import hold_out
    from ase_deepspin.training.config import TrainConfig

    config = TrainConfig.from_yaml(HERE / "kondo_train.yaml")
    calc = DeepSpinCalculator(str(model))
    report = {}
    systems = sorted((workdir / "data").iterdir())
    held = hold_out([f for system in systems for f in read_frames(system)], config.held_out)[1]
    for system in systems:
        picked = [f for f in held if Path(frame_system(f)).name == system.name]
        e_ref, e_ml, w_ref, w_ml = [], [], [], []
        for f in picked:
            atoms = f.to_atoms()
            atoms.calc = calc
            e_ml.append(atoms.get_potential_energy() / len(atoms))
            e_ref.append(f.energy / len(atoms))
            w_ml.append(calc.get_magnetic_torques(atoms))
            w_ref.append(f.torques)
        e_ref, e_ml, w_ref, w_ml = map(np.array, (e_ref, e_ml, w_ref, w_ml))

        def scores(ref, got):
            rmse = float(np.sqrt(np.mean((got - ref) ** 2)))
            return {"rmse": rmse, "label_rms": float(np.sqrt(np.mean((ref - ref.mean()) ** 2))),
                    "r2": float(1 - np.sum((got - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))}

        spins = np.array([f.spins for f in picked])

        def across(w):  # the part of the torques that turns the (unit) spins: all that LLG sees
            return w - (w * spins).sum(-1, keepdims=True) * spins

        report[system.name] = {"frames": len(picked), "energy_eV_per_site": scores(e_ref, e_ml),
                               "torques_eV_per_muB": scores(w_ref, w_ml),
                               "torques_across_S_eV_per_muB": scores(across(w_ref), across(w_ml))}
        e, w, t = (report[system.name][k] for k in ("energy_eV_per_site", "torques_eV_per_muB",
                                                     "torques_across_S_eV_per_muB"))
        print(f"{system.name:12s} {len(picked):3d} frames  E RMSE {1e3 * e['rmse']:.2f} meV/site (spread "
              f"{1e3 * e['label_rms']:.2f}), R² {e['r2']:.4f};  ω RMSE {1e3 * w['rmse']:.1f} meV/μB (label RMS "
              f"{1e3 * w['label_rms']:.1f}), R² {w['r2']:.4f};  across S {1e3 * t['rmse']:.1f} "
              f"({1e3 * t['label_rms']:.1f}), R² {t['r2']:.4f}")
    (workdir / "test.json").write_text(json.dumps(report, indent=2))


def ground_state(workdir: Path, model: Path, starts: int, seed: int = 1) -> None:
    """Spins relaxed from random starts with the model (and the oracle, same starts): energy per site by the
    oracle, the mean angle between neighbouring spins, and the chirality of up and down triangles."""
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.analysis.chirality import scalar_chirality
    from ase_deepspin.dynamics import relax_spins

    rng = np.random.default_rng(seed)
    lattice = triangular_lattice(SIZE, SPACING)
    n1, n2 = SIZE
    neighbours = [(k, ((k // n2 + 1) % n1) * n2 + k % n2) for k in range(len(lattice))]
    rows = []
    for start in range(starts):
        spins = random_spins(rng, len(lattice))
        for name, calc in (("model", DeepSpinCalculator(str(model))), ("oracle", oracle())):
            atoms = lattice.copy()
            atoms.set_initial_magnetic_moments(spins)
            atoms.calc = calc
            result = relax_spins(atoms, tmax=1e-3, steps=3000)
            relaxed = atoms.get_initial_magnetic_moments()
            up, down = scalar_chirality(relaxed, SIZE)
            angle = np.degrees(np.mean([np.arccos(np.clip(relaxed[a] @ relaxed[b], -1, 1)) for a, b in neighbours]))
            check = lattice.copy()
            check.set_initial_magnetic_moments(relaxed)
            check.calc = oracle()
            rows.append({"start": start, "relaxed_with": name, "converged": bool(result.converged),
                         "minimum": result.minimum, "oracle_energy_eV_per_site": check.get_potential_energy() / len(check),
                         "neighbour_angle_deg": float(angle), "chirality_mean": float(np.mean([up, down])),
                         "chirality_abs_mean": float(np.mean(np.abs([up, down])))})
            print(json.dumps(rows[-1]), flush=True)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ground_state.json").write_text(json.dumps(rows, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["data", "train", "test", "ground"])
    parser.add_argument("--workdir", type=Path, default=Path("runs/kondo"))
    parser.add_argument("--frames", type=int, default=40, help="frames per kind (random, and each temperature)")
    parser.add_argument("--model", type=Path, default=None, help="default: WORKDIR/model.pt")
    parser.add_argument("--starts", type=int, default=3, help="random starts of the ground-state search")
    args = parser.parse_args()
    if args.stage == "data":
        make_data(args.workdir, args.frames)
    elif args.stage == "train":
        subprocess.run([sys.executable, "-m", "ase_deepspin.cli", "train", str(HERE / "kondo_train.yaml")],
                       check=True)
    elif args.stage == "test":
        test(args.workdir, args.model or args.workdir / "model.pt")
    else:
        ground_state(args.workdir, args.model or args.workdir / "model.pt", args.starts)


if __name__ == "__main__":
    main()
