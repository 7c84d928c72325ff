"""``ase-deepspin model-devi``."""

from __future__ import annotations

HELP = "model deviation of a committee on structures (DeePMD-kit's columns)"


def add_arguments(parser) -> None:
    parser.add_argument("models", nargs="+", help="two or more model files (a committee)")
    parser.add_argument("data", help="trajectory (.traj, extxyz), DeePMD-kit npy system or folder of them")
    parser.add_argument("-o", "--out", default="model_devi.out")


def run(args):
    from ..io import resolve_model_path
    from ..training.evaluate import MODEL_DEVI_COLUMNS, model_deviation_table, write_model_devi

    structures = _read_structures(args.data)
    rows = model_deviation_table([resolve_model_path(m) for m in args.models], structures, progress=True)
    write_model_devi(args.out, rows)
    worst = rows[:, 1 + MODEL_DEVI_COLUMNS.index("max_devi_fr")]
    worst_fm = rows[:, 1 + MODEL_DEVI_COLUMNS.index("max_devi_fm")]
    print(f"{len(rows)} structures, {len(args.models)} models: max_devi_f {worst.min():.3g}-{worst.max():.3g} eV/Å, "
          f"max_devi_fm {worst_fm.min():.3g}-{worst_fm.max():.3g} eV/μB; written to {args.out}")


def _read_structures(path):
    """Frames of a DeePMD-kit system (or folder of them) or extxyz file, else every image of an ASE-readable
    trajectory (spins from its initial magnetic moments, as SpinLatticeDynamics stores them)."""
    from pathlib import Path

    from ..io.frames import read_frames

    if Path(path).is_dir() or str(path).endswith((".xyz", ".extxyz")):
        return read_frames(path)
    import ase.io

    try:
        return ase.io.read(path, index=":")
    except Exception as err:  # ASE raises many kinds for unreadable files
        raise ValueError(f"cannot read structures from {path}: {err}") from err
