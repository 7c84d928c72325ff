"""``ase-deepspin info``."""

from __future__ import annotations

HELP = "hyper-parameters of a model file"


def add_arguments(parser) -> None:
    parser.add_argument("model")


def run(args):
    from ..io import load_model, resolve_model_path
    from ..model.ranges import fixed_length_types
    from ..io.torchscript import read_export_record

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
              f"(gates {cfg.gate_neuron}, moment floor {cfg.moment_floor} μB, spin correlations within "
              f"{cfg.correlation_rcut if cfg.correlation_rcut is not None else cfg.rcut} Å, moment scales "
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
        print_tables(model)


def print_tables(model):
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
