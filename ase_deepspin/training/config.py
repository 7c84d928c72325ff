"""Training configuration: the YAML input declared once as typed dataclasses, a strict loader, and a
reference of every key generated from the declaration (``ase-deepspin doc-train-input``, as DeePMD-kit's
``dp doc-train-input``).

The YAML follows DeePMD-kit's input where a counterpart exists: sections ``model`` (``type_map``,
``descriptor``, ``fitting_net``, ``spin``, ``short_range``), ``learning_rate``, ``loss`` and ``training``.
:func:`load_input` reads it into the section dataclasses (:class:`TrainInput` and below), refusing an
unknown key with the keys allowed there and a value of the wrong type with the type expected;
:meth:`TrainConfig.from_dict` then maps the sections onto the run's :class:`TrainConfig` and the
model's :class:`~ase_deepspin.model.ModelConfig`, refusing what is not implemented by name.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from ase.data import atomic_numbers

from ..model import ModelConfig


def key(default=dataclasses.MISSING, doc: str = "", factory=None):
    """A documented field of an input section (``doc`` is what the generated reference says)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 and JSON do: 3e-3 and 1E5 are numbers, not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_yaml(path):
    """The contents of a YAML file, numbers written as JSON writes them (``3e-3``) read as numbers."""
    return yaml.load(Path(path).read_text(), Loader=_Loader)


# ---------------------------------------------------------------------------------------------- the input
@dataclass
class DescriptorInput:
    """``model.descriptor``."""

    type: str = key("se_e2_a", "se_e2_a: DeepSPIN's pseudo-atoms at R + ηS (spin.virtual_scale); spin_invariant: "
                               "real atoms, spins through S_i·S_j and |S_i|² (exact under rotating the spins alone)")
    sel: typing.Union[list[int], int, str] = key(60, "most neighbours per block within rcut: one int, one per type, "
                                                     "(se_e2_a) one per type and pseudo-type, or \"auto\" / "
                                                     "\"auto:RATIO\" (DeePMD-kit's: the most any training frame "
                                                     "has per type, times RATIO, default 1.1)")
    rcut: float = key(5.6, "cut-off radius (Å)")
    rcut_smth: float = key(5.4, "where the smooth switch starts (Å)")
    neuron: list[int] = key(doc="embedding net widths", factory=lambda: [25, 50, 100])
    axis_neuron: int = key(16, "columns of the embedding matrix kept in the descriptor")
    env_protection: float = key(0.01, "protection distance in the environment rows s/(r + p) (Å)")
    seed: int = key(1, "seed of the initial weights")
    resnet_dt: bool = key(False, "must be false (embedding nets without timestep, as DeePMD-kit's spin example)")
    type_one_side: bool = key(False, "must be false (one embedding net per centre and neighbour type)")
    activation_function: str = key("tanh", "only tanh")
    gate_neuron: list[int] = key(doc="spin_invariant: hidden widths of the spin gates", factory=lambda: [32])
    moment_floor: float = key(0.1, "spin_invariant: μB, regularises the spin cosine as a moment vanishes")
    correlation_rcut: typing.Optional[float] = key(None, "spin_invariant: Å, the neighbours whose spins correlate in "
                                                         "the B_i B_iᵀ readout (default rcut); spins couple up to "
                                                         "twice this apart, so keep it below half the data cells")


@dataclass
class FittingInput:
    """``model.fitting_net``."""

    neuron: list[int] = key(doc="fitting net widths", factory=lambda: [240, 240, 240])
    resnet_dt: bool = key(True, "trainable timestep of the residual layers")
    activation_function: str = key("tanh", "only tanh")
    seed: typing.Optional[int] = key(None, "DeePMD-kit's seed of the fitting nets: here one generator seeded by "
                                           "descriptor.seed draws every weight, so it must be omitted or equal that")


@dataclass
class SpinInput:
    """``model.spin``."""

    use_spin: typing.Union[list[bool], list[int], list[str]] = key(
        doc="which elements are magnetic: one bool per type, or the magnetic types' indices or symbols", factory=list)
    virtual_scale: typing.Union[list[float], float] = key(
        doc="η (Å/μB) per type, per magnetic type or one for all: pseudo-atoms at R + ηS (se_e2_a, or "
            "spin_invariant with spin_orbit)", factory=list)
    baseline: typing.Optional[dict] = key(None, "Heisenberg–Landau spin baseline: {n_basis, onsite_order, form: "
                                                "deviation | landau, biquadratic}")
    time_reversal: bool = key(True, "se_e2_a: symmetrise the energy under S → −S (spin_invariant: always)")
    spin_orbit: bool = key(False, "spin_invariant: add a time-reversal-symmetric pseudo-atom branch for "
                                  "spin-orbit terms (DMI, anisotropy)")


@dataclass
class ModelInput:
    """``model``."""

    type_map: list[str] = key(doc="element of each type", factory=list)
    descriptor: DescriptorInput = key(doc="descriptor", factory=DescriptorInput)
    fitting_net: FittingInput = key(doc="fitting nets, one per type", factory=FittingInput)
    spin: SpinInput = key(doc="magnetic types and spin terms", factory=SpinInput)
    short_range: typing.Optional[dict] = key(None, "ZBL wall: {type: zbl, margin, width} (Å, placed below the "
                                                   "shortest training distances) or explicit r_inner, r_outer tables")
    data_stat_nbatch: typing.Optional[int] = key(None, "DeePMD-kit's: the descriptor statistics come from this many "
                                                       "batches of training frames (default: all training frames)")


@dataclass
class LearningRateInput:
    """``learning_rate``: lr(t) = start_lr · r^floor(t / decay_steps), reaching stop_lr at numb_steps."""

    type: str = key("exp", "only exp")
    start_lr: float = key(1e-3, "learning rate at step 0")
    stop_lr: float = key(3.51e-8, "learning rate at the last step")
    decay_steps: int = key(5000, "steps between decays")


@dataclass
class TrainingDataInput:
    """``training.training_data``."""

    systems: list[str] = key(doc="DeePMD-kit npy systems (or folders of them) or extxyz files", factory=list)
    batch_size: typing.Union[int, str] = key(3, "frames per step, or \"auto\" / \"auto:N\" (DeePMD-kit's: enough "
                                                "frames for N atoms, default 32, in the smallest system)")
    relative_energy: list[str] = key(doc="systems (named as in held_out) whose energies have their own zero, "
                                         "another code's: each gets a constant (eV/atom) fitted in training, so only "
                                         "energy differences within it are learned (systems of one recorded labeller "
                                         "share one)", factory=list)


@dataclass
class ValidationDataInput:
    """``training.validation_data`` (DeePMD-kit's): systems that validate instead of a random hold-out."""

    systems: list[str] = key(doc="DeePMD-kit npy systems (or folders of them) or extxyz files", factory=list)
    batch_size: typing.Union[int, str] = key(1, "DeePMD-kit's validation batch size: every frame of the systems "
                                                "is validated here, so it changes nothing")
    numb_btch: int = key(1, "DeePMD-kit's validation batches per record: every frame is validated here, so it "
                            "changes nothing")


@dataclass
class TrainingInput:
    """``training``."""

    training_data: TrainingDataInput = key(doc="data", factory=TrainingDataInput)
    validation_data: typing.Optional[ValidationDataInput] = key(None, "systems to validate on (DeePMD-kit's)")
    numb_steps: int = key(100_000, "training steps")
    n_validation: typing.Optional[int] = key(None, "frames held out at random (after held_out); default 20, or 0 "
                                                   "with validation_data")
    split_seed: int = key(0, "seed of the random hold-out")
    held_out: list[str] = key(doc="systems or blocks SYSTEM#a:b held out for validation", factory=list)
    exclude_frames: list[str] = key(doc="training frames left out (sources ending with these)", factory=list)
    seed: int = key(1, "seed of batches and augmentation")
    disp_freq: int = key(100, "steps between validation records")
    disp_file: str = key("lcurve.out", "the learning curve's file in output_dir (DeePMD-kit's columns)")
    save_freq: int = key(1000, "steps between checkpoints")
    max_time: typing.Optional[float] = key(None, "stop after this many seconds")
    output_dir: str = key("run", "folder of the run")
    model_file: str = key("model.pt", "model file written in output_dir")
    storage_dtype: str = key("float64", "float64 or float32 tensors in the model file")
    threads: typing.Optional[int] = key(None, "torch threads of the run")
    init_model: typing.Optional[str] = key(None, "start from the weights of this model file (a warm start)")
    augment_spin_rotation: bool = key(False, "rotate all spins of each frame at random every step (labels "
                                             "without spin-orbit coupling only)")


@dataclass
class TrainInput:
    """The whole input."""

    model: ModelInput = key(doc="the model", factory=ModelInput)
    learning_rate: LearningRateInput = key(doc="learning-rate schedule", factory=LearningRateInput)
    loss: "LossInput" = key(doc="loss", factory=lambda: LossInput())
    training: TrainingInput = key(doc="the run", factory=TrainingInput)


# ---------------------------------------------------------------------------------------------- loader
def _type_name(kind) -> str:
    """A type as the reference writes it: ``int``, ``list of float``, ``int or list of int``, ``mapping``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(k) for k in typing.get_args(kind) if k is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(kind)[0])}"
    return {dict: "mapping", bool: "bool", int: "int", float: "float", str: "str"}.get(kind, getattr(kind, "__name__", str(kind)))


# scalar types of the input: what YAML values each accepts (a bool is never a number) and how errors name it
SCALARS = {bool: ((bool,), "true or false"), int: ((int,), "an integer"), float: ((int, float), "a number"),
           str: ((str,), "a string")}


def _convert(kind, value, where: str):
    """``value`` as type ``kind`` (ints accepted for floats), or a ValueError naming ``where``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if dataclasses.is_dataclass(kind):
        return load_section(kind, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)
        return [_convert(item, v, f"{where}[{k}]") for k, v in enumerate(value)]
    if kind is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if kind in SCALARS:
        accepted, expected = SCALARS[kind]
        if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"{where}: expected {expected}, got {value!r}")
        return float(value) if kind is float else value
    raise TypeError(f"no rule for {kind} at {where}")


def load_section(cls, raw, where: str):
    """Build the input dataclass ``cls`` from the mapping ``raw`` (nested sections too); an unknown key or a
    value of the wrong type is a ValueError naming where it is and what is allowed."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of keys, got {raw!r}")
    raw = {k: v for k, v in raw.items() if not str(k).startswith("_comment")}  # DeePMD-kit's comments, anywhere
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"unknown {where or 'top-level'} keys {unknown} (allowed: {', '.join(names)})")
    return cls(**{name: _convert(hints[name], value, f"{where}.{name}" if where else name)
                  for name, value in raw.items()})


def load_input(raw: dict) -> TrainInput:
    """The YAML mapping as a :class:`TrainInput` (strict: see :func:`load_section`)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a training config is a mapping with model, learning_rate, loss and training sections, "
                         f"got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if not str(k).startswith("_comment")}
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(TrainInput)})
    if unknown:
        raise ValueError(f"unknown config sections {unknown} (allowed: model, learning_rate, loss, training)")
    return load_section(TrainInput, raw, "")


def input_reference() -> str:
    """Every key of the training input with its type, default and meaning (Markdown), from the declaration."""
    lines = ["# Training input (YAML)", ""]

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        lines.extend([f"## `{prefix}`" if prefix else "## top level", "", cls.__doc__.strip(), "",
                      "| key | type | default | meaning |", "|---|---|---|---|"])
        nested = []
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                nested.append((kind, f"{prefix}.{f.name}" if prefix else f.name))
                lines.append(f"| `{f.name}` | section | | {f.metadata.get('doc', '')} (below) |")
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
            meaning = f.metadata.get("doc", "").replace("|", "\\|")
            lines.append(f"| `{f.name}` | {_type_name(kind)} | `{default}` | {meaning} |")
        lines.append("")
        for kind, path in nested:
            walk(kind, path)

    walk(TrainInput, "")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- DeePMD-kit's forms
def _magnetic_types(use_spin: list, type_map: list[str]) -> list[bool]:
    """``spin.use_spin`` as one bool per type, from bools per type or the magnetic types' indices or symbols."""
    if not use_spin:
        return [False] * len(type_map)
    if all(isinstance(u, bool) for u in use_spin):
        if len(use_spin) != len(type_map):
            raise ValueError(f"spin.use_spin needs one bool per type of type_map {type_map}, got {use_spin}")
        return list(use_spin)
    named = [type_map.index(u) if isinstance(u, str) and u in type_map else u for u in use_spin]
    wrong = [u for u, k in zip(use_spin, named) if not isinstance(k, int) or not 0 <= k < len(type_map)]
    if wrong:
        raise ValueError(f"spin.use_spin: {wrong} name no type of type_map {type_map} (give bools per type, or the "
                         "magnetic types' indices or symbols)")
    return [t in named for t in range(len(type_map))]


def _auto_ratio(value: str, name: str, default: float) -> float:
    head, _, ratio = value.partition(":")
    try:
        if head != "auto":
            raise ValueError
        return float(ratio) if ratio else default
    except ValueError:
        raise ValueError(f"{name}: expected \"auto\" or \"auto:NUMBER\", got {value!r}") from None


def auto_sel(value: str, systems: list[str], type_map: list[str], rcut: float) -> list[int]:
    """DeePMD-kit's ``sel: "auto[:ratio]"``: per neighbour type, the most neighbours within ``rcut`` (Å) that any
    atom of the training frames has, times ``ratio`` (default 1.1), rounded up."""
    from ase.neighborlist import neighbor_list

    from ..io.frames import read_frames

    ratio = _auto_ratio(value, "descriptor.sel", 1.1)
    most = np.zeros(len(type_map), dtype=int)
    for system in systems:
        for frame in read_frames(system):
            atoms = frame.to_atoms()
            centres, neighbours = neighbor_list("ij", atoms, rcut)
            types = np.array([type_map.index(el) for el in atoms.get_chemical_symbols()])
            counts = np.zeros((len(atoms), len(type_map)), dtype=int)
            np.add.at(counts, (centres, types[neighbours]), 1)
            most = np.maximum(most, counts.max(axis=0, initial=0))
    return [int(np.ceil(ratio * m)) for m in most]


def auto_batch_size(value: str, systems: list[str]) -> int:
    """DeePMD-kit's ``batch_size: "auto[:N]"``: frames enough for N atoms (default 32) in the smallest system."""
    from ..io.frames import read_frames

    atoms_wanted = _auto_ratio(value, "training_data.batch_size", 32)
    smallest = min(len(frame.symbols) for system in systems for frame in read_frames(system)[:1])
    return max(1, int(np.ceil(atoms_wanted / smallest)))


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class LossConfig:
    """Loss prefactors (DeePMD-kit's ``ener_spin`` names) and how errors are weighed.

    ``relative_f`` (eV/Å), as DeePMD-kit's ``ener`` loss defines it, divides each atom's force error
    by |F_label| + relative_f; ``relative_fm`` (eV/μB) does the same for torques. They keep frames
    whose forces are ten times larger (hot or strained ones) from owning the loss. Reported RMSEs are
    always absolute. ``baseline_fit_forces`` fits the spin baseline to forces as well as torques
    (each block weighed as the loss weighs it: relative where given, else by its label RMS), so that
    the radial derivatives of its couplings do not add forces the network must cancel.
    ``along_spin_fm`` weighs the part of each torque error along its spin against the part across it
    (1: both alike). Below 1 it is for data whose moments never change length, where the torque along S
    (dE/d|S|, often the largest label: J times the local electron polarisation in an s–d model) steers
    nothing that fixed-length dynamics or minimisers use, and would otherwise own the torque loss.
    """

    start_pref_e: float = key(0.02, "energy prefactor at the start")
    limit_pref_e: float = key(1.0, "energy prefactor at the end")
    start_pref_fr: float = key(1000.0, "force prefactor at the start")
    limit_pref_fr: float = key(1.0, "force prefactor at the end")
    start_pref_fm: float = key(1000.0, "torque prefactor at the start")
    limit_pref_fm: float = key(1.0, "torque prefactor at the end")
    relative_f: typing.Optional[float] = key(None, "eV/Å: divide each atom's force error by |F_label| + relative_f")
    relative_fm: typing.Optional[float] = key(None, "eV/μB: divide each atom's torque error by |ω_label| + relative_fm")
    baseline_fit_forces: bool = key(False, "fit the spin baseline to forces as well as torques")
    along_spin_fm: float = key(1.0, "weight of the torque error's part along S against the part across S")


@dataclass
class TrainConfig:
    """A training run; YAML keys follow DeePMD-kit's input where a counterpart exists.

    ``systems`` are DeePMD-kit npy systems (or folders of them, or extxyz files);
    ``wall`` (YAML ``model.short_range: {type: zbl, margin, width}``, Å) places the ZBL wall of
    each type pair from ``shortest − margin`` (r_outer) to ``r_outer − width`` (r_inner), the
    shortest distance of the pair in the training frames (:func:`resolve_wall`);
    ``validation_systems`` (DeePMD-kit's ``validation_data``) validate whole, beside the held-out frames;
    ``stat_frames`` (``data_stat_nbatch`` batches) bounds the training frames of the descriptor statistics;
    ``disp_file`` names the learning curve's file. ``held_out`` names systems or blocks of frames held out for validation (``SYSTEM`` or ``SYSTEM#a:b``,
    see :func:`ase_deepspin.io.frames.hold_out`); then ``n_validation`` frames more are drawn at random from
    the rest with ``split_seed``; ``exclude_frames`` then removes
    training frames whose source (``path#index``, see :class:`ase_deepspin.io.frames.Frame`) ends with
    one of the given strings, e.g. frames with inconsistent labels. ``init_model`` (DeePMD-kit's
    ``--init-model``) starts from the weights of a model file of the same architecture instead of a
    random draw, keeping its descriptor statistics, spin baseline and energy bias; the learning-rate
    schedule starts afresh (a warm start, as active learning retrains). ``augment_spin_rotation``
    rotates all spins of each training frame, and its torque labels with them, by a fresh uniformly
    random rotation at every step, positions and energy and force labels unchanged: exact for labels
    without spin-orbit coupling (collinear or non-collinear DFT without SOC, isotropic exchange), whose
    energy is invariant under a rotation of the spins alone, and wrong for any label with magnetic
    anisotropy or DMI. The DeepSPIN model is invariant only under joint rotations of lattice and
    spins, so this teaches it the larger symmetry the data have. ``relative_energy`` names systems (as
    ``held_out`` does) whose energies have their own zero, as labels of another DFT code do: each such
    system gets one constant per atom (systems of one recorded labeller share it), fitted with the weights,
    and only its energy differences train the model (see :func:`ase_deepspin.training.train.energy_groups`).
    Times in seconds.
    """

    model: ModelConfig
    systems: list[str]
    validation_systems: list[str] = field(default_factory=list)
    loss: LossConfig = field(default_factory=LossConfig)
    batch_size: int = 3
    numb_steps: int = 100_000
    start_lr: float = 1e-3
    stop_lr: float = 3.51e-8
    decay_steps: int = 5000
    n_validation: int = 20
    split_seed: int = 0
    held_out: list[str] = field(default_factory=list)
    exclude_frames: list[str] = field(default_factory=list)
    seed: int = 1
    disp_freq: int = 100
    disp_file: str = "lcurve.out"
    stat_frames: int | None = None
    save_freq: int = 1000
    max_time: float | None = None
    output_dir: str = "run"
    model_file: str = "model.pt"
    storage_dtype: str = "float64"
    threads: int | None = None
    wall: dict | None = None
    init_model: str | None = None
    augment_spin_rotation: bool = False
    relative_energy: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        """Build from the nested YAML layout (see :func:`load_input` and :func:`input_reference`)."""
        spec = load_input(raw)
        m, desc, fit, spin = spec.model, spec.model.descriptor, spec.model.fitting_net, spec.model.spin
        descriptors = {"se_e2_a": "pseudo_atom", "spin_invariant": "spin_invariant"}
        if desc.type not in descriptors:
            raise ValueError(f"descriptor.type must be se_e2_a (DeepSPIN's pseudo-atoms) or spin_invariant, got "
                             f"{desc.type!r}")
        for section, activation in (("descriptor", desc.activation_function), ("fitting_net", fit.activation_function)):
            if activation != "tanh":
                raise ValueError(f"{section}.activation_function: only tanh is implemented, got {activation!r}")
        if desc.resnet_dt or desc.type_one_side:
            raise ValueError("se_e2_a here uses resnet_dt: false and type_one_side: false (as DeePMD-kit's spin example)")
        type_map = list(m.type_map)
        use_spin = _magnetic_types(spin.use_spin, type_map)
        if fit.seed is not None and fit.seed != desc.seed:
            raise ValueError(f"fitting_net.seed {fit.seed} differs from descriptor.seed {desc.seed}: here one generator "
                             "seeded by descriptor.seed draws every weight (omit fitting_net.seed or make them equal)")
        t = spec.training
        if not t.training_data.systems:
            raise ValueError("training.training_data.systems lists no data")
        if desc.type == "spin_invariant" and not spin.spin_orbit:
            if spin.virtual_scale:
                raise ValueError("the spin_invariant descriptor has no pseudo-atoms: remove spin.virtual_scale "
                                 "(or set spin.spin_orbit: true for a pseudo-atom branch of spin-orbit terms)")
            scale = [0.0] * len(type_map)
        else:
            scale = [spin.virtual_scale] * sum(use_spin) if isinstance(spin.virtual_scale, float) \
                else list(spin.virtual_scale)
            if len(scale) == sum(use_spin) and len(scale) != len(type_map):
                it = iter(scale)
                scale = [next(it) if u else 0.0 for u in use_spin]
            if len(scale) != len(type_map):
                raise ValueError("spin.virtual_scale needs one value per type (or per magnetic type)")
            scale = [s if u else 0.0 for s, u in zip(scale, use_spin)]
            if any(u and s <= 0 for s, u in zip(scale, use_spin)):
                raise ValueError("magnetic types need a positive virtual_scale (Å/μB)")
        short_range, wall = m.short_range, None
        explicit = short_range is not None and ("r_inner" in short_range or "r_outer" in short_range)
        if short_range is not None and not explicit:
            wall = dict(short_range)
            if wall.pop("type", "zbl") != "zbl" or set(wall) - {"margin", "width"}:
                raise ValueError(f"model.short_range takes type: zbl with margin and width (Å), or explicit "
                                 f"r_inner and r_outer tables; got {short_range}")
            wall = {"margin": float(wall.get("margin", 0.1)), "width": float(wall.get("width", 0.5))}
        if explicit:
            short_range = {"charges": nuclear_charges(type_map), **short_range}
        invariant = {"gate_neuron": desc.gate_neuron, "moment_floor": desc.moment_floor,
                     "correlation_rcut": desc.correlation_rcut} \
            if desc.type == "spin_invariant" else {}
        model = ModelConfig(type_map=type_map, virtual_scale=scale, fitting_neuron=list(fit.neuron),
                            descriptor=descriptors[desc.type], magnetic=[bool(u) for u in use_spin],
                            spin_orbit=spin.spin_orbit, resnet_dt=fit.resnet_dt, spin_baseline=spin.baseline,
                            time_reversal=spin.time_reversal, short_range=short_range if explicit else None,
                            sel=auto_sel(desc.sel, t.training_data.systems, type_map, desc.rcut)
                            if isinstance(desc.sel, str) else desc.sel, rcut=desc.rcut, rcut_smth=desc.rcut_smth, neuron=list(desc.neuron),
                            axis_neuron=desc.axis_neuron, env_protection=desc.env_protection, seed=desc.seed,
                            **invariant)
        lr = spec.learning_rate
        if lr.type != "exp":
            raise ValueError(f"learning_rate.type: only exp (exponential decay) is implemented, got {lr.type!r}")
        loss = spec.loss
        if loss.type != "ener_spin":
            raise ValueError(f"loss.type: only ener_spin (energy, forces and torques, Eq. 4 of the DeepSPIN "
                             f"paper) is implemented, got {loss.type!r}")
        if not loss.along_spin_fm >= 0:
            raise ValueError(f"loss.along_spin_fm is a weight (≥ 0), got {loss.along_spin_fm!r}")
        run = {f.name: getattr(t, f.name) for f in dataclasses.fields(TrainingInput)
               if f.name not in ("training_data", "validation_data", "n_validation")}
        validation = [str(v) for v in t.validation_data.systems] if t.validation_data else []
        n_validation = t.n_validation if t.n_validation is not None else (0 if validation else 20)
        batch_size = t.training_data.batch_size
        if isinstance(batch_size, str):
            batch_size = auto_batch_size(batch_size, t.training_data.systems)
        stat_frames = None if m.data_stat_nbatch is None else m.data_stat_nbatch * batch_size
        return cls(model=model, systems=[str(s) for s in t.training_data.systems], validation_systems=validation,
                   relative_energy=[str(s) for s in t.training_data.relative_energy],
                   loss=LossConfig(**{f.name: getattr(loss, f.name) for f in dataclasses.fields(LossConfig)}),
                   wall=wall, batch_size=batch_size, start_lr=lr.start_lr, stop_lr=lr.stop_lr,
                   decay_steps=lr.decay_steps, n_validation=n_validation, stat_frames=stat_frames, **run)

    @classmethod
    def from_yaml(cls, path) -> "TrainConfig":
        try:
            raw = read_yaml(path)
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            raise ValueError(f"{path} is not valid YAML{line}: {getattr(err, 'problem', None) or err}") from None
        try:
            return cls.from_dict(raw)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class LossInput(LossConfig):
    """``loss``: prefactors p = p_limit + (p_start − p_limit) lr / lr_start; see :class:`LossConfig`."""

    type: str = key("ener_spin", "only ener_spin (energy, forces and torques, Eq. 4 of the DeepSPIN paper)")


def nuclear_charges(type_map: list[str]) -> list[float]:
    """Atomic numbers of the type map's elements (the ZBL wall's nuclear charges)."""
    unknown = [t for t in type_map if t not in atomic_numbers]
    if unknown:
        raise ValueError(f"the ZBL wall needs element names in type_map to know nuclear charges, got {unknown}")
    return [float(atomic_numbers[t]) for t in type_map]
