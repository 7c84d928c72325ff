"""``ase-deepspin convert``."""

from __future__ import annotations

HELP = "DeePMD-kit spin se_e2_a model <-> ase-deepspin model; TorchScript for LAMMPS"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="DeePMD-kit .dp/.yaml/.pth/.pt checkpoint, or an ase-deepspin model (or shipped name)")
    parser.add_argument("out", help="ase-deepspin .pt file, TorchScript module for LAMMPS pair_style deepspin (.pth), "
                        "or DeePMD-kit .dp file")
    parser.add_argument("--dtype", choices=["float64", "float32"], default=None,
                        help="precision of a .pth export (default: the model's, float64)")


def run(args):
    import torch

    from ..io import load_model, resolve_model_path, save_model
    from ..io.deepmd import is_deepmd_file, read_deepmd, write_deepmd
    from ..io.torchscript import read_export_record, write_lammps_model

    out = args.out
    if not out.endswith((".dp", ".hlo", ".pt", ".pth")):
        raise ValueError(f"convert writes an ase-deepspin model (.pt), a TorchScript module for LAMMPS (.pth) or a "
                         f"DeePMD-kit .dp file, not {out!r}")
    if out.endswith(".pth"):
        model = load_model(resolve_model_path(args.model))
        dtype = None if args.dtype is None else getattr(torch, args.dtype)
        write_lammps_model(model, out, dtype=dtype)
        eta_s = _largest_pseudo_offset(model)
        print(f"TorchScript module for LAMMPS written to {out} ({args.dtype or str(model.dtype)[6:]}): "
              f"`pair_style deepspin {out}` (DeePMD-kit's plugin), `pair_coeff * * {' '.join(model.config.type_map)}`"
              + (f", and a neighbour skin of at least {eta_s:.2f} Å (η|S| at the largest training moment) "
                 "plus the usual margin" if eta_s else ""))
    elif args.dtype is not None:
        raise ValueError("--dtype applies to TorchScript exports (.pth) only")
    elif out.endswith((".dp", ".hlo")):
        write_deepmd(load_model(resolve_model_path(args.model)), out)
        print(f"DeePMD-kit model written to {out} (for LAMMPS, `ase-deepspin convert MODEL model.pth` writes the "
              "module pair_style deepspin runs, with no DeePMD-kit Python needed)")
    elif read_export_record(args.model) is not None:  # this package's own TorchScript export
        save_model(load_model(args.model), out)
        print(f"ase-deepspin model written to {out} (the model the TorchScript export {args.model} holds)")
    elif is_deepmd_file(args.model):
        save_model(read_deepmd(args.model), out)
        print(f"ase-deepspin model written to {out}")
    else:
        raise ValueError(f"convert reads a DeePMD-kit model (.dp, .yaml, .pth, .pt checkpoint) into an ase-deepspin "
                         f".pt file, or writes an ase-deepspin model to .pth (LAMMPS) or .dp; got {args.model} -> {out}")


def _largest_pseudo_offset(model) -> float:
    """η|S| (Å) at the largest moment the training data held (0 if no ranges are recorded)."""
    ranges = (model.config.data_ranges or {}).get("moment") or []
    return max([eta * r[1] for eta, r in zip(model.config.virtual_scale, ranges) if r], default=0.0)
