"""``ase-deepspin label``."""

from __future__ import annotations

HELP = "label frames with an oracle: GPAW's collinear DFT (+U) or any ASE calculator with magnetic torques"


def add_arguments(parser) -> None:
    parser.add_argument("frames", help="frames to label: a file ase.io reads (trajectory, extended XYZ) with spins as "
                                       "initial magnetic moments in μB, or a DeePMD-kit npy system")
    parser.add_argument("-o", "--output", required=True,
                        help="the labelled frames: a DeePMD-kit npy system (a folder) or an extended XYZ file "
                             "(.xyz, .extxyz); rerun the same command to continue an interrupted labelling")
    parser.add_argument("--oracle", default="gpaw",
                        help="'gpaw' (ase_deepspin.calculators.collinear_dft.gpaw_labeller) or module:function "
                             "returning the labelling calculator (default: gpaw)")
    parser.add_argument("--settings", help="YAML file of the oracle's keyword arguments (for gpaw: ecut_eV, xc, "
                                           "hubbard_u_eV, kpoint_density or kpoints, smearing_eV, txt)")
    parser.add_argument("--index", default=":", help="the frames to take, as ase.io.read's index ('::10', '-5:')")
    parser.add_argument("--type-map", nargs="+", help="element of each type of the npy system written (default: the "
                                                      "elements in the order they first appear)")


def read_inputs(path: str, index: str) -> list:
    """The frames of ``path`` as ASE atoms with (N, 3) spins (collinear moments (N,) are taken along z)."""
    from pathlib import Path

    import numpy as np
    from ase.io import read
    from ase.io.formats import string2index

    from ..io.frames import read_frames

    if Path(path).is_dir():
        chosen = read_frames(path)[string2index(index)]
        images = [f.to_atoms() for f in (chosen if isinstance(chosen, list) else [chosen])]
    else:
        images = read(path, index=index)
        images = images if isinstance(images, list) else [images]
    for atoms in images:
        spins = atoms.get_initial_magnetic_moments()
        if spins.ndim == 1:
            atoms.set_initial_magnetic_moments(None)
            atoms.set_initial_magnetic_moments(np.outer(spins, [0.0, 0.0, 1.0]))
        atoms.calc = None
    return images


def run(args):
    import time
    from pathlib import Path

    import numpy as np

    from ..io.frames import read_frames, write_deepmd_npy, write_extxyz
    from ..training.active import label, load_oracle
    from ..training.config import read_yaml

    if not all(c.isdigit() or c in ":-" for c in args.index):
        raise ValueError(f"--index must be a slice or an index like '::10' or '-5:', got {args.index!r}")
    images = read_inputs(args.frames, args.index)
    if not images:
        raise ValueError(f"{args.frames}: no frames at index {args.index!r}")
    settings = (read_yaml(args.settings) or {}) if args.settings else {}
    out = Path(args.output)
    as_xyz = out.suffix in (".xyz", ".extxyz")
    type_map = args.type_map or list(dict.fromkeys(s for a in images for s in a.get_chemical_symbols()))
    done = read_frames(out) if out.exists() else []
    for k, frame in enumerate(done):  # continuing: what is there must be the start of what is asked
        if k >= len(images) or not np.allclose(frame.positions, images[k].positions, atol=1e-8):
            raise ValueError(f"{out} holds frames that are not the first ones of {args.frames}: choose another output")
    if len(done) == len(images):
        print(f"{out}: all {len(images)} frames are labelled")
        return
    oracle = load_oracle(args.oracle, settings)
    if done:
        print(f"{out}: {len(done)} frames labelled, continuing")
    for k in range(len(done), len(images)):
        started = time.perf_counter()
        frame = label(images[k], oracle)
        frame.source = f"{args.frames}#{k}"
        done.append(frame)
        # the whole file again after each frame: an interrupted run loses one calculation at most
        if as_xyz:
            write_extxyz(out, done)
        else:
            write_deepmd_npy(out, done, type_map)
        print(f"frame {k + 1}/{len(images)}: E {frame.energy:.6f} eV, max |F| {np.abs(frame.forces).max():.4f} eV/Å, "
              f"{time.perf_counter() - started:.1f} s", flush=True)
