"""Command line: ``ase-deepspin train | model-devi | explore | test | freeze | compress | convert | info``."""

from __future__ import annotations

import argparse
import os
import sys


def _train(args):
    from .training.config import TrainConfig
    from .training.train import train, train_ensemble

    cfg = TrainConfig.from_yaml(args.config)
    if args.max_time is not None:
        cfg.max_time = args.max_time
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.init_model:
        cfg.init_model = args.init_model
    if args.ensemble is not None:
        if args.resume:
            raise ValueError("--resume continues one run; an interrupted --ensemble continues by running it again "
                             "(finished members are kept)")
        paths = train_ensemble(cfg, args.ensemble, overwrite=args.force)
        print(f"committee of {len(paths)} models: {' '.join(map(str, paths))}")
        return
    path = train(cfg, resume=args.resume, overwrite=args.force)
    print(f"model written to {path}")


def _model_devi(args):
    from .io import resolve_model_path
    from .training.evaluate import MODEL_DEVI_COLUMNS, model_deviation_table, write_model_devi

    structures = _read_structures(args.data)
    rows = model_deviation_table([resolve_model_path(m) for m in args.models], structures)
    write_model_devi(args.out, rows)
    worst = rows[:, 1 + MODEL_DEVI_COLUMNS.index("max_devi_fr")]
    worst_fm = rows[:, 1 + MODEL_DEVI_COLUMNS.index("max_devi_fm")]
    print(f"{len(rows)} structures, {len(args.models)} models: max_devi_f {worst.min():.3g}-{worst.max():.3g} eV/Å, "
          f"max_devi_fm {worst_fm.min():.3g}-{worst_fm.max():.3g} eV/μB; written to {args.out}")


def _explore(args):
    from .training.active import ExploreConfig, final_committee, load_oracle, run_active_learning

    cfg = ExploreConfig.from_yaml(args.config)
    if cfg.oracle is None:
        raise ValueError(f"{args.config} names no oracle ('oracle: module:function' returning an ASE calculator)")
    run_active_learning(cfg, load_oracle(cfg.oracle), args.workdir)
    paths = final_committee(cfg, args.workdir)
    print(f"committee trained on every label: {' '.join(map(str, paths))}; summary in {args.workdir}/summary.json")


def _read_structures(path):
    """Frames of a DeePMD-kit system (or folder of them) or extxyz file, else every image of an ASE-readable
    trajectory (spins from its initial magnetic moments, as SpinLatticeDynamics stores them)."""
    from pathlib import Path

    from .io.frames import read_frames

    if Path(path).is_dir() or str(path).endswith((".xyz", ".extxyz")):
        return read_frames(path)
    import ase.io

    try:
        return ase.io.read(path, index=":")
    except Exception as err:  # ASE raises many kinds for unreadable files
        raise ValueError(f"cannot read structures from {path}: {err}") from err


def _test(args):
    from .training.evaluate import accuracy_report

    table = accuracy_report(args.model, args.data, n_validation=args.validation_of, split_seed=args.split_seed,
                       plot=None if args.no_plot else args.plot)
    print(table)


def _freeze(args):
    import torch

    from .training.train import freeze

    out = freeze(args.checkpoint, args.out, storage_dtype=getattr(torch, args.storage_dtype))
    print(f"model written to {out}")


def _doc_train_input(args):
    from .training.config import input_reference

    print(input_reference())


def _change_bias(args):
    from .training.train import change_bias

    shift = change_bias(args.model, args.output)
    print(f"energy bias shifted by {', '.join(f'{1e3 * v:+.3f}' for v in shift)} meV/atom (per type), fitted on "
          f"the run's training frames; written to {args.output or args.model}")


def _compress(args):
    from .io import resolve_model_path
    from .model import compress_model
    from .io import load_model, save_model

    model = compress_model(load_model(resolve_model_path(args.model)), tolerance=args.tolerance,
                           min_distance=args.min_distance)
    save_model(model, args.out)
    print(f"compressed model written to {args.out}")
    _print_tables(model)


def _print_tables(model):
    cfg = model.config
    print(f"compression     tolerance {cfg.compression['tolerance']:g} (|G| units), neighbours from "
          f"{cfg.compression['min_distance']} Å to rcut tabulated, closer ones by the nets")
    print("  table               x range              knots   step min / max      max error")
    for table, (_, _, label) in zip(model.descriptor.tables, model.descriptor.radial_nets()):
        steps = table.knots.diff()
        print(f"  {label:18s}  [{table.lower:8.3f}, {table.upper:8.3f}]  {len(table.knots):6d}   "
              f"{float(steps.min()):.2e} / {float(steps.max()):.2e}   {float(table.max_error):.1e}")


def _print_baseline(model):
    import torch

    base, cfg = model.baseline, model.config
    landau = cfg.spin_baseline["form"] == "landau"
    print(f"spin baseline   {cfg.spin_baseline['form']} form"
          f"{' with biquadratic exchange' if base.biquadratic else ''}, {cfg.spin_baseline['n_basis']} radial Gaussians, "
          f"on-site order {cfg.spin_baseline['onsite_order']} (Heisenberg-Landau term, see ase_deepspin.model.baseline)")
    units = ("eV/μB^2p", "meV/μB²", "meV/μB⁴", "meV/μB⁴") if landau else ("eV/μB^p", "meV", "meV/μB", "meV")
    r = torch.arange(2.0, cfg.rcut + 1e-9, 0.5, dtype=base.exchange.dtype)
    for t, magnetic in enumerate(cfg.magnetic):
        if not magnetic:
            continue
        name = cfg.type_map[t]
        onsite = ", ".join(f"{float(a):.4g}" for a in base.onsite[t])
        print(f"  {name}: |S| reference {float(base.moment_ref[t]):.4f} μB, on-site a_p [{onsite}] {units[0]}")
        types = torch.full_like(r, t, dtype=torch.int64)
        couplings = base.couplings(r, types, types)
        print(f"  {name}-{name} J(r) {units[1]} at r = {r[0]:.1f}, {r[1]:.1f} .. {r[-1]:.1f} Å: "
              f"{' '.join(f'{1e3 * float(v):.2f}' for v in couplings[0])}")
        for label, unit, values in zip(("K(r)", "B(r)"), units[2:], couplings[1:]):
            print(f"  {name}-{name} {label} {unit}:{'':20s}{' '.join(f'{1e3 * float(v):.2f}' for v in values)}")


def _rmse_line(rmse: dict) -> str:
    return (f"energy {rmse['energy_meV_per_atom']:.3f} meV/atom, forces {rmse['forces_meV_per_A']:.2f} meV/Å, "
            f"torques {rmse['torques_meV_per_muB']:.2f} meV/μB")


def _print_provenance(record: dict) -> None:
    if not record:
        print("provenance      none recorded (a file written before ase-deepspin kept provenance)")
        return
    print(f"written by      ase-deepspin {record.get('package_version', '?')} at {record.get('written_utc', '?')}"
          " (checksum verified)")
    training = record.get("training")
    if training:
        rmse = training.get("held_out_rmse")
        print(f"trained         {training.get('steps')} steps on {', '.join(map(str, training.get('systems', [])))}"
              + (f" ({training['training_frames']} frames, {training['validation_frames']} held out)"
                 if "training_frames" in training else ""))
        parts = training.get("held_out_rmse_by_selection") or {}
        if rmse:
            print(f"held-out RMSE   {_rmse_line(rmse)}" + (" (pooled over all validation frames)" if parts else ""))
        for selection, part in parts.items():
            print(f"  {selection}: {_rmse_line(part)}")
    for key in ("converted_from", "compression"):
        if key in record:
            print(f"{key.replace('_', ' '):<15s} {record[key]}")


def _info(args):
    from .io import resolve_model_path
    from .io import load_model
    from .model.ranges import fixed_length_types
    from .io.torchscript import read_export_record

    path = resolve_model_path(args.model)
    model = load_model(path)
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"file            {path}")
    export = read_export_record(path) if path.suffix == ".pth" else None
    if export is not None:
        print(f"kind            TorchScript module for DeePMD-kit's LAMMPS pair_style deepspin, {export['dtype']}, "
              f"exported by ase-deepspin {export['package_version']}; the model it holds:")
    magnetic = [t for t, m in zip(cfg.type_map, cfg.magnetic) if m]
    print(f"type_map        {cfg.type_map}   (magnetic: {', '.join(magnetic) or 'none'})")
    if cfg.descriptor == "pseudo_atom":
        print(f"descriptor      pseudo_atom: se_e2_a over real atoms and pseudo-atoms at R + ηS (pseudo-types "
              f"{', '.join(model.block_names()[cfg.n_types:])}), virtual_scale η {cfg.virtual_scale} Å/μB")
    else:
        print(f"descriptor      spin_invariant: se_e2_a over real atoms, spins through S_i·S_j and |S_i|² "
              f"(gates {cfg.gate_neuron}, moment floor {cfg.moment_floor} μB, moment scales "
              f"{[round(float(v), 4) for v in model.descriptor.moment_scale]} μB)"
              + (f"; spin-orbit branch: pseudo-atoms at R + ηS, η {cfg.virtual_scale} Å/μB, symmetrised under time "
                 "reversal" if cfg.spin_orbit else ""))
    print(f"rcut            {cfg.rcut} Å (smooth from {cfg.rcut_smth} Å), env_protection {cfg.env_protection} Å")
    print(f"sel             {cfg.sel} (total {sum(cfg.sel)})")
    print(f"embedding       {cfg.neuron}, axis_neuron {cfg.axis_neuron}, resnet_dt {cfg.embedding_resnet_dt}")
    print(f"fitting         {cfg.fitting_neuron}, resnet_dt {cfg.resnet_dt}")
    print(f"energy bias     {[round(float(b), 6) for b in model.energy_bias]} eV")
    meaning = {"spin rotation and time reversal": "exact under rotating the spins alone (no spin-orbit terms: no "
               "DMI or anisotropy) and under S -> -S",
               "time reversal": "E_net = [E(R, S) + E(R, -S)]/2, exactly even in S; spins rotate only jointly with "
               "the lattice", "none": "only joint rotations of lattice and spins (not even in S)"}[cfg.symmetry]
    print(f"spin symmetry   {cfg.symmetry}: {meaning}")
    if cfg.short_range is not None:
        pairs = [(a, b) for a in range(cfg.n_types) for b in range(a, cfg.n_types)]
        print("short range     ZBL wall (ase_deepspin.model.zbl), full below r_inner, off beyond r_outer: "
              + ", ".join(f"{cfg.type_map[a]}-{cfg.type_map[b]} {cfg.short_range['r_inner'][a][b]:.3f}-"
                          f"{cfg.short_range['r_outer'][a][b]:.3f} Å" for a, b in pairs))
    if cfg.data_ranges is not None:
        ranges = cfg.data_ranges
        moments = [f"{t} |S| {b[0]:.4g}-{b[1]:.4g} μB" for t, b in zip(cfg.type_map, ranges["moment"]) if b]
        closest = [f"{cfg.type_map[a]}-{cfg.type_map[b]} {ranges['shortest'][a][b]:.3f} Å"
                   for a in range(cfg.n_types) for b in range(a, cfg.n_types) if ranges["shortest"][a][b] is not None]
        print(f"training data   {'; '.join(moments)}; shortest {', '.join(closest)} (calculators warn beyond)")
        for t, b in zip(cfg.type_map, ranges.get("alignment") or []):
            if b is not None:
                print(f"spin alignment  {t}: first-shell <ŝ_i·ŝ_j> (within {b['radius']:.2f} Å) "
                      f"{b['atoms'][0]:.2f} to {b['atoms'][1]:.2f} per atom, {b['frames'][0]:.2f} to {b['frames'][1]:.2f} per frame "
                      "(calculators warn beyond)")
        magnetic = [t for t, b in zip(cfg.type_map, ranges["moment"]) if b]
        fixed = fixed_length_types(ranges, cfg.type_map, magnetic)
        refused = "fixed in the data (longitudinal dynamics and relax='all' refuse them)"
        print("moment lengths  " + "; ".join(f"{t} {refused if t in fixed else 'vary in the data'}" for t in magnetic))
    print(f"parameters      {n_params}")
    _print_provenance(model.provenance)
    if model.baseline is not None:
        _print_baseline(model)
    if model.compressed:
        _print_tables(model)


def _convert(args):
    import torch

    from .io import resolve_model_path
    from .io import load_model, save_model
    from .io.deepmd import is_deepmd_file, read_deepmd, write_deepmd
    from .io.torchscript import write_lammps_model

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


def main(argv=None) -> int:
    from .version import __version__

    parser = argparse.ArgumentParser(prog="ase-deepspin", description="DeepSPIN spin-lattice potentials for ASE")
    parser.add_argument("--version", action="version", version=f"ase-deepspin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config")
    p.add_argument("--max-time", type=float, default=None, help="wall-time budget in seconds")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--init-model", default=None, metavar="MODEL",
                   help="start from this model file's weights (same architecture; a fresh learning-rate schedule)")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--force", action="store_true", help="replace an earlier run's model and checkpoint")
    p.add_argument("--ensemble", type=int, default=None, metavar="K",
                   help="train K members with different seeds (same data) into OUTPUT_DIR/member_k")
    p.set_defaults(func=_train)

    p = sub.add_parser("doc-train-input", help="reference of every key of the training YAML (Markdown)")
    p.set_defaults(func=_doc_train_input)

    p = sub.add_parser("model-devi", help="model deviation of a committee on structures (DeePMD-kit's columns)")
    p.add_argument("models", nargs="+", help="two or more model files (a committee)")
    p.add_argument("data", help="trajectory (.traj, extxyz), DeePMD-kit npy system or folder of them")
    p.add_argument("-o", "--out", default="model_devi.out")
    p.set_defaults(func=_model_devi)

    p = sub.add_parser("explore", help="active learning: explore with a committee, label candidates, retrain")
    p.add_argument("config", help="YAML of ase_deepspin.training.active.ExploreConfig")
    p.add_argument("--workdir", default="active", help="folder of the loop (rerun to continue)")
    p.set_defaults(func=_explore)

    p = sub.add_parser("test", help="RMSE/MAE of a model on labelled data, with parity plots")
    p.add_argument("model", help="model file or shipped model name")
    p.add_argument("data", nargs="+", help="DeePMD-kit npy systems (or folders of them) or extxyz files")
    p.add_argument("--validation-of", type=int, default=None, metavar="N",
                   help="only the N frames a training run with the same split held out")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--plot", default="parity.png")
    p.add_argument("--no-plot", action="store_true")
    p.set_defaults(func=_test)

    p = sub.add_parser("freeze", help="model file from a training checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--storage-dtype", choices=["float64", "float32"], default="float64")
    p.set_defaults(func=_freeze)

    p = sub.add_parser("change-bias", help="refit a trained model's energy bias on its training frames "
                                           "(DeePMD-kit's change-bias)")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="write here instead of in place")
    p.set_defaults(func=_change_bias)

    p = sub.add_parser("compress", help="tabulate the embedding nets of a model (faster inference)")
    p.add_argument("model", help="model file or shipped model name")
    p.add_argument("out")
    p.add_argument("--tolerance", type=float, default=1e-8, help="largest table error, in units of G")
    p.add_argument("--min-distance", type=float, default=0.5,
                   help="Å; neighbours closer than this are evaluated by the nets, not the tables")
    p.set_defaults(func=_compress)

    p = sub.add_parser("info", help="hyper-parameters of a model file")
    p.add_argument("model")
    p.set_defaults(func=_info)

    p = sub.add_parser("convert", help="DeePMD-kit spin se_e2_a model <-> ase-deepspin model; TorchScript for LAMMPS")
    p.add_argument("model", help="DeePMD-kit .dp/.yaml/.pth/.pt checkpoint, or an ase-deepspin model (or shipped name)")
    p.add_argument("out", help="ase-deepspin .pt file, TorchScript module for LAMMPS pair_style deepspin (.pth), "
                   "or DeePMD-kit .dp file")
    p.add_argument("--dtype", choices=["float64", "float32"], default=None,
                   help="precision of a .pth export (default: the model's, float64)")
    p.set_defaults(func=_convert)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"ase-deepspin {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (`info | head`)
        # Python's recipe: point stdout at devnull so that the flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
