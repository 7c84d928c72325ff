"""Accuracy of a model on labelled frames (``ase-deepspin test``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..calculators.deepspin import DeepSpinCalculator
from ..system import check_structure
from ..io.frames import read_frames, split_frames


LABEL_FILES = {"energy": "energy.npy", "forces": "force.npy", "torques": "force_mag.npy"}  # DeePMD-kit names
LABELS = tuple(LABEL_FILES)


def labelled_quantities(frames) -> list[str]:
    """The quantities ("energy", "forces", "torques") labelled in every frame; raises if none is."""
    present = [k for k in LABELS if all(getattr(f, k) is not None and not (k == "torques" and f.torque_labels == "none")
                                        for f in frames)]
    if not present:
        raise ValueError(f"no frame carries labels ({', '.join(LABEL_FILES.values())} in a DeePMD-kit system, or "
                         "energy/forces/magnetic_torques in extxyz): nothing to test against")
    return present


def predict(calc: DeepSpinCalculator, frames, quantities=("energy", "forces", "torques"),
            relative_energy: list[str] = ()) -> dict:
    """Reference and predicted energy per atom (eV), forces (eV/Å), torques on magnetic atoms (eV/μB).

    ``quantities`` chooses which of the three (each must be labelled in every frame). Torques of frames
    labelled across the spins only (``torque_labels="transverse"``) enter the part across S alone. The
    energies of the systems ``relative_energy`` names (as training names them: another code's zero) are
    compared after removing their mean difference per atom from the model's (the constant training fits)."""
    cfg = calc.model.config
    for k in quantities:
        missing = [f.source for f in frames if getattr(f, k) is None]
        if missing:
            raise ValueError(f"{len(missing)} frame(s) have no {k} label ({LABEL_FILES[k]}), e.g. {missing[0]}")
    out = {k: ([], []) for k in quantities}
    spins = []  # of the magnetic atoms, to split the torques along and across S
    transverse = ([], [], [])  # spins, reference, predicted of frames labelled across S only
    for f in frames:
        atoms = f.to_atoms()
        calc.calculate(atoms, ["energy", "forces", "magnetic_torques"])
        magnetic = np.asarray(cfg.magnetic)[check_structure(atoms, cfg.type_map)]
        if "energy" in out:
            out["energy"][0].append(f.energy / len(f))
            out["energy"][1].append(calc.results["energy"] / len(f))
        if "forces" in out:
            out["forces"][0].append(f.forces)
            out["forces"][1].append(calc.results["forces"])
        if "torques" in out and f.torque_labels == "transverse":
            for part, values in zip(transverse, (f.spins, f.torques, calc.results["magnetic_torques"])):
                part.append(values[magnetic])
        elif "torques" in out:
            out["torques"][0].append(f.torques[magnetic])
            out["torques"][1].append(calc.results["magnetic_torques"][magnetic])
            spins.append(f.spins[magnetic])
    if "energy" in out and relative_energy:
        from .train import energy_groups
        from ..io.frames import frame_system

        groups = energy_groups(frames, list(relative_energy))
        residual = np.array(out["energy"][0]) - np.array(out["energy"][1])
        reference = np.array(out["energy"][0])
        member = np.array([groups.get(frame_system(f), -1) for f in frames])
        for g in set(groups.values()):
            reference[member == g] -= residual[member == g].mean()
        out["energy"] = (list(reference), out["energy"][1])
    if "torques" in out and not spins:
        del out["torques"]  # every frame is labelled across S only: that part alone is reported
    pairs = {k: (np.concatenate([np.ravel(a) for a in ref]), np.concatenate([np.ravel(a) for a in pred]))
             for k, (ref, pred) in out.items()}
    if "torques" in out:
        pairs.update(torque_parts(np.concatenate(spins), *(v.reshape(-1, 3) for v in pairs["torques"])))
    if transverse[0]:
        across = torque_parts(*(np.concatenate(v) for v in transverse))["torques_transverse"]
        pairs["torques_transverse"] = tuple(np.concatenate([a, b]) for a, b in
                                            zip(pairs.get("torques_transverse", ((), ())), across))
    return pairs


def torque_parts(spins: np.ndarray, reference: np.ndarray, predicted: np.ndarray) -> dict:
    """Longitudinal (along Ŝ) and transverse parts of reference and predicted torques [M, 3] eV/μB.

    ``torques_longitudinal`` holds ω·Ŝ (one number per moment); ``torques_transverse`` the two
    components of ω − (ω·Ŝ)Ŝ in the plane normal to Ŝ, so that the RMSE of each part is per
    component, as the total's is (total MSE = (longitudinal MSE + 2 transverse MSE) / 3). Zero moments,
    which have no direction, are left out of both.
    """
    lengths = np.linalg.norm(spins, axis=-1)
    keep = lengths > 0
    unit = spins[keep] / lengths[keep, None]
    helper = np.where(np.abs(unit[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    first = np.cross(unit, helper)
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    second = np.cross(unit, first)
    parts = {}
    for name, axes in (("torques_longitudinal", [unit]), ("torques_transverse", [first, second])):
        parts[name] = tuple(np.concatenate([np.sum(t[keep] * a, axis=-1) for a in axes])
                            for t in (reference, predicted))
    return parts


def error_table(pairs: dict) -> dict:
    """RMSE and MAE (meV/atom, meV/Å, meV/μB) of each quantity, and ``null``: the RMSE of the null
    prediction a model must beat (the mean energy per atom of the frames; zero forces and torques)."""
    def null(k, r):
        return r - r.mean() if k == "energy" else r

    return {k: {"rmse": 1e3 * float(np.sqrt(np.mean((p - r) ** 2))), "mae": 1e3 * float(np.mean(np.abs(p - r))),
                "null": 1e3 * float(np.sqrt(np.mean(null(k, r) ** 2))), "n": int(r.size)}
            for k, (r, p) in pairs.items()}


def accuracy_report(model, data: list[str], n_validation: int | None = None, split_seed: int = 0,
               plot: str | Path | None = "parity.png", calc: DeepSpinCalculator | None = None,
               relative_energy: list[str] = ()) -> str:
    """Print-ready RMSE/MAE table of ``model`` over the frames in ``data`` (optionally only the
    ``n_validation`` frames that a training run with ``split_seed`` held out); writes parity plots.
    ``relative_energy`` as :func:`predict` takes it."""
    frames = [f for d in data for f in read_frames(d)]
    if n_validation is not None:
        frames = split_frames(frames, n_validation, split_seed)[1]
    quantities = labelled_quantities(frames)
    calc = calc or DeepSpinCalculator(model)
    pairs = predict(calc, frames, quantities, relative_energy)
    table = error_table(pairs)
    units = {"energy": "meV/atom", "forces": "meV/Å", "torques": "meV/μB"}
    names = {"torques_longitudinal": "  along S", "torques_transverse": "  across S"}
    lines = [f"{len(frames)} frames", f"{'quantity':<10s} {'RMSE':>10s} {'MAE':>10s} {'null RMSE':>10s}  unit"]
    lines += [f"{names.get(k, k):<10s} {v['rmse']:10.4f} {v['mae']:10.4f} {v['null']:10.4f}  {units[k.split('_')[0]]}"
              for k, v in table.items()]
    lines += [f"{k:<10s} not labelled in every frame ({LABEL_FILES[k]})" for k in LABELS if k not in quantities]
    lines.append("null: RMSE of predicting the frames' mean energy per atom, zero forces and zero torques")
    if plot:
        from .plots import plot_parity

        titles = {"energy": "energy (eV/atom)", "forces": "force (eV/Å)", "torques": "torque (eV/μB)"}
        plot_parity({titles[k]: pairs[k] for k in quantities if k in pairs}, plot)
        lines.append(f"parity plots: {plot}")
    return "\n".join(lines)


MODEL_DEVI_COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_fr", "min_devi_fr", "avg_devi_fr",
                      "max_devi_fm", "min_devi_fm", "avg_devi_fm", "devi_e")


def model_deviation_table(models, structures, progress: bool = False) -> np.ndarray:
    """Rows (index, then :data:`MODEL_DEVI_COLUMNS`) of a committee's model deviation on each structure.

    ``structures`` are ASE atoms with spins (initial magnetic moments, μB) or :class:`~ase_deepspin.io.frames.Frame`.
    Columns as DeePMD-kit's ``pair_style deepspin`` writes them for spin models (virial per atom eV, forces
    eV/Å, magnetic forces −∂E/∂S eV/μB over magnetic atoms), plus ``devi_e`` (eV/atom) last; the virial
    columns are 0 for structures that are not periodic in all three directions. ``progress`` shows a bar.
    """
    from tqdm import tqdm

    calc = DeepSpinCalculator(list(models))
    rows = []
    for k, atoms in enumerate(tqdm(structures, disable=not progress, desc="model deviation", unit="structure")):
        atoms = atoms.to_atoms() if hasattr(atoms, "to_atoms") else atoms.copy()
        calc.calculate(atoms, ["energy", "forces", "magnetic_torques"])
        devi = calc.results["model_deviation"]
        rows.append([k] + [devi.get(name.replace("_fr", "_f"), 0.0) for name in MODEL_DEVI_COLUMNS])
    return np.array(rows, dtype=float)


def write_model_devi(path, rows: np.ndarray) -> None:
    """Write :func:`model_deviation_table` rows in DeePMD-kit's ``model_devi.out`` layout."""
    header = f"{'step':>11s}" + "".join(f"{name:>19s}" for name in MODEL_DEVI_COLUMNS)
    np.savetxt(path, rows, fmt=["%12d"] + ["%19.6e"] * len(MODEL_DEVI_COLUMNS), delimiter="", header=header)
