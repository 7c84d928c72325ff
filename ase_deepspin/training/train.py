"""Training DeepSPIN models on energies, forces and magnetic torques.

Loss (Eq. 4 of Yang et al. 2024) for a batch of B frames, N_b atoms in frame b:

    L = p_e mean_b (ΔE_b / N_b)² + p_f mean_{i,α} ΔF_iα² + p_m mean_{i magnetic, α} Δω_iα²

with prefactors moving from their start to their limit values as the learning rate decays,
p = p_limit + (p_start − p_limit) lr / lr_start (DeePMD-kit's rule), and an exponentially decaying
learning rate lr(t) = lr_start · r^floor(t / decay_steps), r chosen so that lr reaches
``stop_lr`` at ``numb_steps``. Optimiser: Adam.

Before training, the descriptor statistics, the optional spin baseline (least squares on the
training torques, :mod:`ase_deepspin.model.baseline`) and the per-type energy bias (least squares
of the frame energies on the type counts) come from the training frames.

Runs are resumable: batches are drawn from a permutation seeded by (seed, epoch), so a run
resumed from its checkpoint continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..io.frames import Frame, frame_system, hold_out, read_frames, split_frames, systems_named
from .config import LossConfig, TrainConfig, nuclear_charges
from ..model import DeepSpinModel, ModelConfig
from ..io import save_model
from ..model.baseline import fit_spin_baseline, relative_weights
from ..model.ranges import data_ranges, shortest_distances
from ..system import model_graph, symbol_types, validate_spins


# ---------------------------------------------------------------------------------------------- batches
class PreparedFrames:
    """Frames with neighbour lists and labels as tensors, ready to be concatenated into batches.

    ``groups`` maps systems whose energies have their own zero to the index of their fitted constant
    (:func:`energy_groups`); a frame's ``energy_group`` is −1 where its energy is on the model's zero.
    """

    def __init__(self, frames: list[Frame], model: DeepSpinModel, groups: dict[str, int] | None = None):
        cfg = model.config
        self.model = model
        self.items, self.structures = [], []
        groups = groups or {}
        for f in frames:
            types = symbol_types(f.symbols, cfg.type_map, f.source)
            missing = [name for name, label in (("energy (energy.npy)", f.energy),
                                                ("torques (force_mag.npy)", f.torques)) if label is None
                       and not (name.startswith("torques") and f.torque_labels == "none")]
            if missing:
                raise ValueError(f"{f.source}: training needs energy and torque labels (forces are optional, torques "
                                 f"too where the frame says it has none); missing {', '.join(missing)}")
            spins = validate_spins(f.spins, np.asarray(cfg.magnetic)[types], f.symbols, f.source)
            inputs = model_graph(model, f.positions, f.cell, f.pbc, types, spins).inputs()
            self.structures.append((f.positions, f.cell, f.pbc, types, spins))
            dt = model.dtype
            # a frame weighs only the labels it carries: no forces (spins on a frozen lattice), no torques or
            # only their part across the spins (a collinear DFT state)
            has_forces = f.forces is not None
            magnetic = torch.as_tensor(np.asarray(cfg.magnetic)[types])
            inputs.update(energy=torch.tensor([f.energy], dtype=dt),
                          energy_group=torch.tensor([groups.get(frame_system(f), -1)]),
                          forces_label=torch.as_tensor(f.forces if has_forces else np.zeros((len(types), 3)), dtype=dt),
                          has_forces=torch.full((len(types),), has_forces),
                          torques_label=torch.as_tensor(f.torques if f.torques is not None else np.zeros((len(types), 3)),
                                                        dtype=dt),
                          has_torques=magnetic & (f.torque_labels != "none"),
                          transverse_only=torch.full((len(types),), f.torque_labels == "transverse"),
                          magnetic=magnetic)
            self.items.append(inputs)

    def __len__(self):
        return len(self.items)

    def spin_rotated(self, index: int, rotation: np.ndarray) -> dict:
        """Frame ``index`` with its spins and torque labels rotated by ``rotation`` [3, 3] (positions,
        energy and forces kept): its pseudo-atoms move, so the neighbour list is rebuilt."""
        positions, cell, pbc, types, spins = self.structures[index]
        item = dict(self.items[index])
        item.update(model_graph(self.model, positions, cell, pbc, types, spins @ rotation.T).inputs())
        rotation = torch.as_tensor(rotation, dtype=item["torques_label"].dtype)
        item["torques_label"] = item["torques_label"] @ rotation.T
        return item

    def batch(self, indices, rotations=None) -> dict:
        """Concatenate frames: atom indices of edges shifted, ``atom_frames`` added; with ``rotations``
        (one [3, 3] matrix per frame) each frame's spins and torques are rotated (:meth:`spin_rotated`)."""
        parts = ([self.items[i] for i in indices] if rotations is None
                 else [self.spin_rotated(i, r) for i, r in zip(indices, rotations)])
        shift, out = 0, {k: [] for k in parts[0]}
        out["atom_frames"] = []
        for b, p in enumerate(parts):
            for k, v in p.items():
                out[k].append(v + shift if k in ("centers", "neighbors") else v)
            out["atom_frames"].append(torch.full((len(p["positions"]),), b, dtype=torch.int64))
            shift += len(p["positions"])
        return {k: torch.cat(v) for k, v in out.items()}


def energy_groups(frames: list[Frame], selections: list[str]) -> dict[str, int]:
    """Index of the fitted energy constant of each system ``selections`` name (ends of paths, as
    ``held_out`` names them): systems labelled by another code, whose energies have their own zero. Systems
    whose frames record the same labeller (code and settings) share one constant, so that energies across
    them (a strained cell against the cubic one) still count; others get one each."""
    labellers = {frame_system(f): json.dumps(f.labeller, sort_keys=True) if f.labeller else None for f in frames}
    named = [s for name in selections for s in systems_named(sorted(labellers), name, f"relative_energy entry {name!r}")]
    keys = {system: labellers[system] or system for system in dict.fromkeys(named)}
    index = {key: k for k, key in enumerate(dict.fromkeys(keys.values()))}
    return {system: index[key] for system, key in keys.items()}


def energy_bias(frames: list[Frame], type_map: list[str]) -> np.ndarray:
    """Per-type energy bias (eV): least squares of frame energies on type counts."""
    counts = np.array([[np.sum(f.symbols == t) for t in type_map] for f in frames], dtype=float)
    energies = np.array([f.energy for f in frames])
    return np.linalg.lstsq(counts, energies, rcond=None)[0]


def initial_energy_bias(model: DeepSpinModel, data: PreparedFrames, frames: list[Frame]) -> None:
    """Set the per-type energy bias so the untrained model's energies fit the labels in the mean.

    The residual of the labels against the freshly initialised network (random atomic energies
    of order 1 eV) is fitted on type counts; without this the first thousands of steps only
    learn a constant.
    """
    model.energy_bias.zero_()
    shift_energy_bias(model, data, frames)


@torch.no_grad()
def shift_energy_bias(model: DeepSpinModel, data: PreparedFrames, frames: list[Frame]) -> np.ndarray:
    """Add to the per-type energy bias the least-squares fit, on type counts, of the residual energies
    (label − model, eV) of ``frames``; returns the shift (eV per atom of each type). Forces and torques
    do not change. After training this removes the constant energy offset a loss dominated by forces
    leaves (DeePMD-kit's ``change-bias``)."""
    predicted = np.concatenate([evaluate(model, data.batch([k]), create_graph=False)["energy"].detach().numpy()
                                for k in range(len(data))])
    # frames of another code's energy zero say nothing about this one
    residual = [dataclasses.replace(f, energy=f.energy - e) for f, e, item in zip(frames, predicted, data.items)
                if int(item["energy_group"]) < 0]
    if not residual:
        raise ValueError("every frame's energy is relative (relative_energy): at least one system must fix the "
                         "model's energy zero")
    shift = energy_bias(residual, model.config.type_map)
    model.energy_bias.add_(torch.as_tensor(shift, dtype=model.energy_bias.dtype))
    return shift


@torch.no_grad()
def fit_energy_offsets(model: DeepSpinModel, datasets: list[PreparedFrames], n_groups: int) -> torch.Tensor:
    """The constant (eV/atom) [G] of each relative-energy group that best aligns its labels with the
    model's energies: the mean of (label − model)/atoms over the group's frames in the first of
    ``datasets`` that has any."""
    offsets = torch.zeros(n_groups, dtype=model.energy_bias.dtype)
    for g in range(n_groups):
        for data in datasets:
            members = [k for k, item in enumerate(data.items) if int(item["energy_group"]) == g]
            if members:
                batch = data.batch(members)
                n_atoms = torch.bincount(batch["atom_frames"]).to(offsets.dtype)
                predicted = evaluate(model, batch, create_graph=False)["energy"]
                offsets[g] = ((batch["energy"] - predicted) / n_atoms).mean()
                break
    return offsets


def resolve_wall(model: ModelConfig, shortest: torch.Tensor, margin: float = 0.1, width: float = 0.5) -> ModelConfig:
    """``model`` with a ZBL wall below ``shortest`` [T, T] (Å), the shortest distance of each type pair in
    the training frames (:func:`~ase_deepspin.model.ranges.shortest_distances`).

    r_outer = min(shortest − margin, rcut) and r_inner = r_outer − width (Å), so the wall is exactly
    zero on every training frame; a pair never within rcut gets r_outer = rcut.
    """
    if not (margin >= 0 and width > 0):
        raise ValueError(f"short_range needs margin >= 0 and width > 0 (Å), got margin={margin}, width={width}")
    outer = torch.clamp(shortest - margin, max=model.rcut)
    inner = outer - width
    if bool((inner <= 0).any()):
        raise ValueError(f"short_range: the shortest training distances {shortest.tolist()} Å leave no room for "
                         f"a wall of width {width} Å at margin {margin} Å")
    return dataclasses.replace(model, short_range={"type": "zbl", "charges": nuclear_charges(model.type_map),
                                                   "r_inner": inner.tolist(), "r_outer": outer.tolist()})


# ---------------------------------------------------------------------------------------------- steps
def learning_rate(cfg: TrainConfig, step: int) -> float:
    """lr_start · r^floor(step / decay_steps), r = (stop/start)^(decay_steps/numb_steps)."""
    rate = math.exp(math.log(cfg.stop_lr / cfg.start_lr) * cfg.decay_steps / max(cfg.numb_steps, 1))
    return max(cfg.start_lr * rate ** (step // cfg.decay_steps), cfg.stop_lr)


def prefactors(loss: LossConfig, lr: float, start_lr: float) -> tuple[float, float, float]:
    """Loss prefactors (energy, forces, torques) at learning rate ``lr``: DeePMD-kit's schedule,
    limit + (start − limit)·lr/start_lr, moving from the start values to the limits as lr decays."""
    x = lr / start_lr
    return tuple(lim + (start - lim) * x for start, lim in [(loss.start_pref_e, loss.limit_pref_e),
                                                          (loss.start_pref_fr, loss.limit_pref_fr),
                                                          (loss.start_pref_fm, loss.limit_pref_fm)])


def evaluate(model: DeepSpinModel, batch: dict, create_graph: bool) -> dict:
    """Predictions for a batch: energy [B], forces [N, 3], torques [N, 3]."""
    n_frames = int(batch["atom_frames"][-1]) + 1
    keys = ("positions", "spins", "atom_types", "centers", "neighbors", "offsets", "pseudo", "atom_frames")
    return model(**{k: batch[k] for k in keys}, n_frames=n_frames, create_graph=create_graph)


def errors(model: DeepSpinModel, batch: dict, create_graph: bool, loss: LossConfig | None = None,
           offsets: torch.Tensor | None = None) -> dict:
    """Squared-error means of a batch: energy per atom (eV²), forces (eV²/Å²), torques (eV²/μB²), each
    over the labels the frames carry (torques of transverse-only frames across the spins alone).

    With ``loss`` giving ``relative_f``/``relative_fm``, ``f``/``m`` are the relative errors the loss
    uses (dimensionless, see :class:`LossConfig`) and ``f_absolute``/``m_absolute`` the absolute ones.
    ``offsets`` [G] (eV/atom) are the constants of the relative-energy groups (:func:`energy_groups`),
    needed when the batch has frames of one.
    """
    out = evaluate(model, batch, create_graph)
    n_atoms = torch.bincount(batch["atom_frames"]).to(out["energy"].dtype)
    energy, group = out["energy"], batch["energy_group"]
    if bool((group >= 0).any()):
        if offsets is None:
            raise ValueError("the batch has frames of relative energy (relative_energy): their constants are needed")
        energy = energy + torch.where(group >= 0, offsets[group.clamp(min=0)], 0.0) * n_atoms
    mag, labelled = batch["magnetic"] & batch["has_torques"], batch["has_forces"]
    forces, torques = batch["forces_label"][labelled], batch["torques_label"][mag]
    force_error = out["forces"][labelled] - forces if bool(labelled.any()) else out["energy"].new_zeros((1, 3))
    torque_error = out["torques"][mag] - torques if bool(mag.any()) else out["energy"].new_zeros((1, 3))
    transverse = batch["transverse_only"][mag].unsqueeze(-1)
    if bool(transverse.any()):  # the part along the spin is no label there
        torque_error = along_spin_weighted(torque_error, batch["spins"][mag], torch.where(transverse, 0.0, 1.0))
    result = {"e": (((energy - batch["energy"]) / n_atoms) ** 2).mean(),
              "f": force_error.pow(2).mean(), "m": torque_error.pow(2).mean()}
    if loss is None:
        return result
    weighted = bool(mag.any()) and loss.along_spin_fm != 1.0
    if weighted:
        torque_error = along_spin_weighted(torque_error, batch["spins"][mag], loss.along_spin_fm)
    if loss.relative_f is not None or loss.relative_fm is not None or weighted:
        result |= {"f_absolute": result["f"], "m_absolute": result["m"],
                   "f": (force_error * relative_weights(forces, loss.relative_f)).pow(2).mean()
                   if bool(labelled.any()) else result["f"],
                   "m": (torque_error * relative_weights(torques, loss.relative_fm)).pow(2).mean()
                   if bool(mag.any()) else result["m"]}
    return result


def along_spin_weighted(torque_error: torch.Tensor, spins: torch.Tensor, weight) -> torch.Tensor:
    """Torque errors [M, 3] with their part along each spin [M, 3] scaled so that its square weighs
    ``weight`` (a number, or one per atom [M, 1]) times the part across; errors of vanishing moments (no
    direction) are left whole."""
    length = spins.norm(dim=-1, keepdim=True)
    direction = torch.where(length > 0, spins / length.clamp_min(1e-12), torch.zeros_like(spins))
    along = (torque_error * direction).sum(-1, keepdim=True) * direction
    return torque_error - (1.0 - (weight ** 0.5)) * along


def take_step(model, optimizer, batch, cfg: TrainConfig, step: int, offsets: torch.Tensor | None = None) -> dict:
    """One Adam step at the scheduled learning rate and prefactors; returns the batch's errors. ``offsets``:
    the relative-energy constants (:func:`errors`), trained by the same optimizer."""
    lr = learning_rate(cfg, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    pe, pf, pm = prefactors(cfg.loss, lr, cfg.start_lr)
    err = errors(model, batch, create_graph=True, loss=cfg.loss, offsets=offsets)
    loss = pe * err["e"] + pf * err["f"] + pm * err["m"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    # the curve reports absolute errors, whatever the loss weighs
    absolute = {k: float(err.get(f"{k}_absolute", err[k]).detach()) for k in ("e", "f", "m")}
    return absolute | {"loss": float(loss.detach()), "lr": lr}


def validation_rmse(model, data: PreparedFrames, batch_size: int = 8, indices: list[int] | None = None,
                    offsets: torch.Tensor | None = None) -> dict:
    """RMSEs over all frames (or those of ``indices``): energy per atom (eV), forces (eV/Å), torques on
    magnetic atoms (eV/μB), each over the labels the frames carry; ``offsets`` as :func:`errors` takes them."""
    sums = {"e": 0.0, "f": 0.0, "m": 0.0}
    weights = {"e": 0, "f": 0, "m": 0}
    indices = list(range(len(data))) if indices is None else list(indices)
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        batch = data.batch(idx)
        err = errors(model, batch, create_graph=False, offsets=offsets)
        n_frames, n_forces = len(idx), int(batch["has_forces"].sum())
        n_mag = int((batch["magnetic"] & batch["has_torques"]).sum())
        for k, w in [("e", n_frames), ("f", 3 * n_forces), ("m", 3 * n_mag)]:
            sums[k] += float(err[k].detach()) * w
            weights[k] += w
    return {k: math.sqrt(sums[k] / max(weights[k], 1)) for k in sums}


# ---------------------------------------------------------------------------------------------- run
def _batch_indices(cfg: TrainConfig, n_train: int, step: int) -> list[int]:
    per_epoch = max(n_train // cfg.batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([cfg.seed, epoch]).permutation(n_train)
    return order[k * cfg.batch_size : (k + 1) * cfg.batch_size].tolist()


def select_frames(cfg: TrainConfig) -> tuple[list[Frame], list[Frame], list[Frame]]:
    """(all, training, validation) frames of a run: ``held_out`` selections, ``n_validation`` random
    frames and the ``validation_systems`` validate, ``exclude_frames`` are dropped from training (see
    :class:`TrainConfig`)."""
    extra = [f for s in cfg.validation_systems for f in read_frames(s)]
    all_frames = [f for s in cfg.systems for f in read_frames(s)]
    frames, held_frames = hold_out(all_frames, cfg.held_out)
    held_frames = held_frames + extra
    all_frames = all_frames + extra
    train_frames, valid_frames = split_frames(frames, cfg.n_validation, cfg.split_seed)
    if cfg.exclude_frames:
        kept = [f for f in train_frames if not any(f.source.endswith(x) for x in cfg.exclude_frames)]
        if len(train_frames) - len(kept) != len(cfg.exclude_frames):
            raise ValueError(f"exclude_frames {cfg.exclude_frames} matched {len(train_frames) - len(kept)} training "
                             "frames; each entry must name exactly one")
        train_frames = kept
    return all_frames, train_frames, held_frames + valid_frames


def record_data_ranges(path, out=None) -> dict:
    """Recompute the data ranges of the model file ``path`` from the training frames its provenance names
    (for files written before a kind of range was recorded) and write it to ``out`` (default: in place);
    weights, statistics and provenance are kept, the provenance noting the update. Returns the ranges."""
    model, cfg = _training_run(path)
    train_frames = select_frames(cfg)[1]
    items = PreparedFrames(train_frames, model).items
    ranges = data_ranges(items, model.config.magnetic, shortest_distances(items, model.config.n_types))
    model.config.data_ranges = ranges
    _save_like(model, path, out, {"data_ranges_recomputed": f"from the {len(train_frames)} training frames, by "
                                                            "ase_deepspin.training.train.record_data_ranges"})
    return ranges


def change_bias(path, out=None, systems: list[str] | None = None, log=print) -> np.ndarray:
    """Refit the energy bias of the model file ``path`` (or a shipped model's name, with ``out``) on the
    training frames its provenance names (:func:`shift_energy_bias`) and write it to ``out`` (default: in
    place), the provenance noting the shift; returns the shift (eV per atom of each type). ``systems``
    replaces the data paths the run recorded (relative to the folder it ran in)."""
    from ..io.model_file import PRETRAINED_DIR, resolve_model_path

    path = resolve_model_path(path)
    if out is None and path.resolve().parent == PRETRAINED_DIR.resolve():
        raise ValueError(f"{path.name} is a shipped model: it is not changed in place; give an output file (-o)")
    model, cfg = _training_run(path)
    if systems:
        cfg.systems = [str(s) for s in systems]
    missing = [s for s in cfg.systems if not Path(s).exists()]
    if missing:
        raise ValueError(f"the training data {missing} that {path} records are not here (paths as the training run "
                         f"saw them, relative to the folder it ran in): give them with --systems")
    log(f"reading the training frames of {', '.join(cfg.systems)}")
    all_frames, train_frames, valid_frames = select_frames(cfg)
    log(f"fitting the energy bias on {len(train_frames)} frames, then measuring {len(valid_frames)} held-out frames")
    groups = energy_groups(all_frames, cfg.relative_energy)
    shift = shift_energy_bias(model, PreparedFrames(train_frames, model, groups), train_frames)
    # the held-out errors the file records were measured with the old bias: measure them again
    training = {**model.provenance["training"], **held_out_record(model, cfg, all_frames, valid_frames)}
    _save_like(model, path, out, {"training": training,
                                  "energy_bias_shift": {"eV_per_atom": dict(zip(model.config.type_map, shift.tolist())),
                                                        "fitted_on": f"the {len(train_frames)} training frames"}})
    return shift


def _training_run(path) -> tuple[DeepSpinModel, TrainConfig]:
    """The model of file ``path`` and the configuration of the training run its provenance records."""
    from ..io import load_model

    model = load_model(path)
    training = model.provenance.get("training")
    if not training or "config" not in training:
        raise ValueError(f"{path} records no training run to find its training frames from")
    raw = dict(training["config"])
    return model, TrainConfig(**{**raw, "model": ModelConfig(**raw["model"]), "loss": LossConfig(**raw["loss"])})


def _save_like(model: DeepSpinModel, path, out, provenance: dict) -> None:
    """Write ``model`` to ``out`` (default ``path``) in the storage dtype of the file ``path``."""
    dtypes = {v.dtype for v in torch.load(path, map_location="cpu", weights_only=True)["state_dict"].values()
              if v.is_floating_point()}
    save_model(model, out or path, storage_dtype=dtypes.pop() if len(dtypes) == 1 else None, provenance=provenance)


def _spin_rotations(cfg: TrainConfig, step: int, n: int) -> np.ndarray | None:
    """Uniformly random rotations [n, 3, 3] seeded by (seed, step), so a resumed run draws the same ones."""
    if not cfg.augment_spin_rotation:
        return None
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=np.random.default_rng([cfg.seed, step, 1])).as_matrix()


def warm_start(model: DeepSpinModel, path) -> None:
    """Copy every parameter and buffer of the model file ``path`` into ``model`` (same architecture).

    The recorded data ranges and the wall stay those of ``model``'s configuration (the new data's).
    """
    from ..io import load_model

    source = load_model(path, dtype=next(model.parameters()).dtype)
    mine, theirs = model.config, source.config
    # everything in the configuration but what the new run decides for itself
    for key in sorted({f.name for f in dataclasses.fields(mine)} - {"seed", "data_ranges", "short_range"}):
        if getattr(mine, key) != getattr(theirs, key):
            raise ValueError(f"init_model {path} has {key} {getattr(theirs, key)}, the configured model "
                             f"{getattr(mine, key)}: a warm start needs the same architecture")
    # the wall is placed from the new data (its configuration), everything learned comes from the file
    learned = {k: v for k, v in source.state_dict().items() if not k.startswith("wall.")}
    model.load_state_dict({**model.state_dict(), **learned})


def check_schedule(cfg: TrainConfig) -> None:
    """Raise ValueError for a schedule that cannot train: no steps, a learning rate that grows or is not
    positive, a time budget that is not positive, empty batches or intervals."""
    if cfg.numb_steps < (0 if cfg.init_model else 1):
        raise ValueError(f"numb_steps must be at least 1 (0 only with init_model, to rewrite that model for new "
                         f"data), got {cfg.numb_steps}")
    if not 0 < cfg.stop_lr <= cfg.start_lr:
        raise ValueError(f"the learning rate must decay: need 0 < stop_lr <= start_lr, got start_lr {cfg.start_lr}, "
                         f"stop_lr {cfg.stop_lr}")
    if cfg.max_time is not None and not cfg.max_time > 0:
        raise ValueError(f"max_time must be a positive number of seconds, got {cfg.max_time}")
    for name in ("batch_size", "decay_steps", "disp_freq", "save_freq"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")


def train(cfg: TrainConfig, resume: str | Path | None = None, progress: bool = True, log=print,
          overwrite: bool = False) -> Path:
    """Train (or resume) a model; returns the path of the written model file.

    Writes into ``cfg.output_dir``: ``input.json`` (the full configuration), ``checkpoint.pt``
    (model, optimiser, step, learning curve), ``lcurve.json`` and ``disp_file`` (``lcurve.out``: DeePMD-kit's
    columns), the model file ``cfg.model_file`` and ``lcurve.png``. The curve ends at the saved step. A fresh run refuses an
    output folder holding an earlier run's model or checkpoint unless ``overwrite``.
    """
    from tqdm import tqdm

    check_schedule(cfg)
    out_dir = Path(cfg.output_dir)
    earlier = [p for p in (out_dir / cfg.model_file, out_dir / "checkpoint.pt") if p.exists()]
    if earlier and resume is None and not overwrite:
        raise ValueError(f"{out_dir} holds an earlier run ({', '.join(p.name for p in earlier)}): resume it "
                         "(--resume), choose another output_dir, or replace it (--force)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_frames, train_frames, valid_frames = select_frames(cfg)
    model = DeepSpinModel(cfg.model)
    groups = energy_groups(all_frames, cfg.relative_energy)
    train_data = PreparedFrames(train_frames, model, groups)
    valid_data = PreparedFrames(valid_frames, model, groups)
    shortest = shortest_distances(train_data.items, cfg.model.n_types)
    cfg.model = dataclasses.replace(cfg.model, data_ranges=data_ranges(train_data.items, cfg.model.magnetic, shortest))
    if cfg.wall is not None:
        cfg.model = resolve_wall(cfg.model, shortest, **cfg.wall)
        log(f"ZBL wall: r_outer {cfg.model.short_range['r_outer']} Å, r_inner {cfg.model.short_range['r_inner']} Å")
    model = DeepSpinModel(cfg.model)  # the same seeded weights: ranges and wall have none
    # the constants of relative-energy systems train with the weights (none: an empty group is harmless)
    offsets = torch.zeros(len(groups), dtype=model.energy_bias.dtype, requires_grad=True)
    optimizer = torch.optim.Adam([{"params": list(model.parameters())}, {"params": [offsets]}], lr=cfg.start_lr)
    step, curve = 0, []
    if resume:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, curve = int(ckpt["step"]), json.loads(ckpt["lcurve"])
        with torch.no_grad():
            offsets.copy_(ckpt["energy_offsets"])
    elif cfg.init_model:
        warm_start(model, cfg.init_model)
        if cfg.numb_steps == 0:
            log(f"numb_steps 0: the model of {cfg.init_model} is written unchanged but for its data ranges and wall")
        log(f"training on {len(train_frames)} frames, validating on {len(valid_frames)}; weights, statistics, "
            f"baseline and energy bias from {cfg.init_model}")
    else:
        model.set_environment_statistics(train_data.items[:cfg.stat_frames])
        if model.baseline is not None:
            fit = fit_spin_baseline(model, train_data.items, forces=cfg.loss.baseline_fit_forces,
                                    relative_f=cfg.loss.relative_f, relative_fm=cfg.loss.relative_fm)
            log(f"spin baseline: training torque RMSE {1e3 * fit['before']:.2f} -> {1e3 * fit['after']:.2f} meV/μB"
                + (f", force RMSE {1e3 * fit['forces_before']:.1f} -> {1e3 * fit['forces_after']:.1f} meV/Å"
                   if "forces_after" in fit else ""))
        initial_energy_bias(model, train_data, train_frames)
        log(f"training on {len(train_frames)} frames, validating on {len(valid_frames)}; "
            f"{sum(p.numel() for p in model.parameters())} parameters")
    if groups and not resume:
        with torch.no_grad():
            offsets.copy_(fit_energy_offsets(model, [train_data, valid_data], len(groups)))
        log("relative energies: " + ", ".join(f"{Path(system).name} {offsets[k].item():+.4f} eV/atom"
                                              for system, k in groups.items()))

    def checkpoint():
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "energy_offsets": offsets.detach().clone(),
                    "lcurve": json.dumps(curve), "config": json.dumps(cfg.to_dict())}, out_dir / "checkpoint.pt")
        (out_dir / "lcurve.json").write_text(json.dumps(curve))
        (out_dir / cfg.disp_file).write_text(lcurve_table(curve))

    def record(stats):
        rmse = validation_rmse(model, valid_data, offsets=offsets) if len(valid_data) else {"e": 0.0, "f": 0.0, "m": 0.0}
        curve.append({"step": step, "lr": stats["lr"], "time_s": time.perf_counter() - started,
                      "train_e": math.sqrt(stats["e"]), "train_f": math.sqrt(stats["f"]),
                      "train_m": math.sqrt(stats["m"]), "val_e": rmse["e"], "val_f": rmse["f"], "val_m": rmse["m"]})
        budget = "" if cfg.max_time is None else \
            f"; time budget {max(0.0, cfg.max_time - (time.perf_counter() - started)):.0f} s left"
        bar.set_postfix_str(f"E {1e3 * rmse['e']:.3f} meV/at F {1e3 * rmse['f']:.2f} meV/Å "
                            f"ω {1e3 * rmse['m']:.2f} meV/μB{budget}")

    (out_dir / "input.json").write_text(json.dumps(cfg.to_dict(), indent=1))  # the run's full configuration
    started = time.perf_counter()
    # with a time budget the bar's own estimate (by steps) can overshoot it: the postfix says what is left
    bar = tqdm(total=cfg.numb_steps, initial=step, disable=not progress, dynamic_ncols=True,
               desc=None if cfg.max_time is None else f"≤ {cfg.max_time:.0f} s")
    stats = None
    while step < cfg.numb_steps:
        indices = _batch_indices(cfg, len(train_data), step)
        batch = train_data.batch(indices, _spin_rotations(cfg, step, len(indices)))
        stats = take_step(model, optimizer, batch, cfg, step, offsets)
        if not math.isfinite(stats["loss"]):
            raise RuntimeError(f"training diverged at step {step}: the loss is {stats['loss']} (learning rate "
                               f"{stats['lr']:.3g}); lower start_lr, or check the labels of the training frames. The "
                               f"last checkpoint in {out_dir} is from before it")
        step += 1
        bar.update(1)
        if step % cfg.disp_freq == 0 or step == cfg.numb_steps:
            record(stats)
        if step % cfg.save_freq == 0:
            checkpoint()
        if cfg.max_time is not None and time.perf_counter() - started > cfg.max_time:
            log(f"time budget of {cfg.max_time} s reached at step {step}")
            break
    if stats is not None and (not curve or curve[-1]["step"] != step):
        record(stats)  # the curve always ends at the step the model is saved at
    bar.close()
    checkpoint()
    model_path = out_dir / cfg.model_file
    training = {"config": cfg.to_dict(), "systems": cfg.systems, "training_frames": len(train_frames),
                "validation_frames": len(valid_frames), "steps": step,
                **held_out_record(model, cfg, all_frames, valid_frames, valid_data,
                                  pooled=(curve[-1]["val_e"], curve[-1]["val_f"], curve[-1]["val_m"]) if curve else None,
                                  offsets=offsets.detach())}
    if groups:
        training["energy_offsets_eV_per_atom"] = {system: offsets[k].item() for system, k in groups.items()}
    save_model(model, model_path, storage_dtype=getattr(torch, cfg.storage_dtype), provenance={"training": training})
    if curve:
        from .plots import plot_learning_curve

        plot_learning_curve(curve, out_dir / "lcurve.png")
    return model_path


def held_out_record(model: DeepSpinModel, cfg: TrainConfig, all_frames: list[Frame], valid_frames: list[Frame],
                    valid_data: PreparedFrames | None = None, pooled: tuple | None = None,
                    offsets: torch.Tensor | None = None) -> dict:
    """The model's RMSE on a run's validation frames, as a model file's provenance records it:
    ``held_out_rmse`` pooled over them (meV/atom, meV/Å, meV/μB; None without validation frames) and,
    where the run holds out named selections, ``held_out_rmse_by_selection``. ``pooled`` (eV/atom, eV/Å,
    eV/μB) is the pooled RMSE where the caller has just measured it (training's last curve row);
    ``offsets`` the relative-energy constants (fitted to the validation frames where not given)."""
    if not valid_frames:
        return {"held_out_rmse": None}
    if valid_data is None or offsets is None:
        groups = energy_groups(all_frames, cfg.relative_energy)
        valid_data = valid_data or PreparedFrames(valid_frames, model, groups)
        offsets = offsets if offsets is not None else fit_energy_offsets(model, [valid_data], len(groups))
    record = {"held_out_rmse": _milli(*(pooled or validation_rmse(model, valid_data, offsets=offsets).values()))}
    if cfg.held_out:
        # one pooled number hides which held-out part is hard (hot frames dominate it): keep each
        position = {id(f): k for k, f in enumerate(valid_frames)}
        record["held_out_rmse_by_selection"] = {
            selection: _milli(*validation_rmse(model, valid_data, offsets=offsets, indices=[
                position[id(f)] for f in hold_out(all_frames, [selection])[1]]).values())
            for selection in cfg.held_out}
    return record


def _milli(e: float, f: float, m: float) -> dict:
    return {"energy_meV_per_atom": 1e3 * e, "forces_meV_per_A": 1e3 * f, "torques_meV_per_muB": 1e3 * m}


def train_ensemble(cfg: TrainConfig, members: int, progress: bool = True, log=print,
                   overwrite: bool = False, init_models: list | None = None) -> list[Path]:
    """Train ``members`` models on the same data and split for a committee; returns their model files.

    Member k trains in ``<output_dir>/member_k`` with weight seed ``model.seed + k`` and batch-order seed
    ``seed + k``, warm-started from ``init_models[k]`` when given; everything else is ``cfg``. A folder
    holding a finished member's model is kept (so an interrupted ensemble continues where it stopped)
    unless ``overwrite``.
    """
    if members < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {members}")
    check_schedule(cfg)
    if init_models is not None and len(init_models) != members:
        raise ValueError(f"{len(init_models)} init_models for {members} members")
    paths = []
    for k in range(members):
        member = dataclasses.replace(cfg, seed=cfg.seed + k, output_dir=str(Path(cfg.output_dir) / f"member_{k}"),
                                     model=dataclasses.replace(cfg.model, seed=cfg.model.seed + k),
                                     init_model=str(init_models[k]) if init_models is not None else cfg.init_model)
        done = Path(member.output_dir) / member.model_file
        if done.is_file() and not overwrite:
            log(f"member {k}: {done} exists, kept")
            paths.append(done)
            continue
        log(f"member {k} of {members}: seeds {member.model.seed} (weights), {member.seed} (batches)")
        paths.append(train(member, progress=progress, log=log, overwrite=overwrite))
    return paths


def lcurve_table(curve: list[dict]) -> str:
    """The learning curve in DeePMD-kit's ``lcurve.out`` columns (RMSEs in eV/atom, eV/Å, eV/μB)."""
    lines = ["#  step    rmse_e_val  rmse_e_trn   rmse_fr_val rmse_fr_trn  rmse_fm_val rmse_fm_trn         lr"]
    lines += [f"{r['step']:7d}  {r['val_e']:11.3e} {r['train_e']:11.3e}  {r['val_f']:11.3e} {r['train_f']:11.3e}  "
              f"{r['val_m']:11.3e} {r['train_m']:11.3e}  {r['lr']:10.3e}" for r in curve]
    return "\n".join(lines) + "\n"


def freeze(checkpoint: str | Path, out: str | Path, storage_dtype: torch.dtype = torch.float64) -> Path:
    """Model file from a training checkpoint (``checkpoint.pt`` of a training run's output folder)."""
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"checkpoint not found: {checkpoint}") from None
    except Exception as err:
        raise ValueError(f"{checkpoint} is not a training checkpoint ({err.__class__.__name__})") from None
    if not (isinstance(ckpt, dict) and {"model", "config", "step"} <= set(ckpt)):
        what = "a model file, which needs no freezing" if isinstance(ckpt, dict) and "state_dict" in ckpt else \
            "not a training checkpoint"
        raise ValueError(f"{checkpoint} is {what}: freeze reads the checkpoint.pt of a training run's output folder")
    cfg = json.loads(ckpt["config"])
    model = DeepSpinModel(ModelConfig(**cfg["model"]))
    model.load_state_dict(ckpt["model"])
    save_model(model, out, storage_dtype=storage_dtype,
               provenance={"training": {"config": cfg, "systems": cfg["systems"], "steps": int(ckpt["step"]),
                                        "frozen_from": str(checkpoint)}})
    return Path(out)
