"""DeePMD-kit 3.x spin se_e2_a models in and out, exactly.

Readable inputs (none needs DeePMD-kit installed):

* ``.dp`` / ``.hlo`` — DeePMD-kit's backend-neutral serialized model (``dp convert-backend``): an
  HDF5 file whose root attribute ``json`` holds the model dictionary; every array inside an
  ``@variables`` mapping is replaced by the name of an HDF5 dataset (``/variable_0000``, ...).
* ``.yaml`` / ``.yml`` — the same dictionary with inline arrays.
* ``.pt`` — a PyTorch-backend training checkpoint (``torch.load(weights_only=True)``).
* ``.pth`` — a frozen PyTorch-backend model (TorchScript; ``torch.jit.load`` — load only files you trust),
  from ``dp freeze`` or ``dp convert-backend``; its settings are read from the modules' attributes (the
  second leaves the model definition empty).
* ``.pt2`` — a ``pt_expt`` archive (``dp convert-backend model.dp model.pt2``); it holds the same
  serialised dictionary as ``.dp``, as JSON, beside the compiled program (which is not run).

TensorFlow graphs (``.pb``) are refused by name (``dp convert-backend model.pb model.dp`` converts them).

The writer produces a ``.dp`` file that DeePMD-kit reads (``dp convert-backend model.dp model.pth``,
``DeepPot("model.dp")``).

How the DeePMD-kit spin model maps onto :class:`~ase_deepspin.model.DeepSpinModel` (checked in
DeePMD-kit 3.2.0's ``deepmd/pt`` and ``deepmd/dpmodel`` sources):

* Type map doubled: real types, then ``<type>_spin`` per real type. Pseudo-types of elements with
  ``use_spin = False`` are placeholders; every pair with a placeholder is in ``pair_exclude_types``,
  which the atomic model applies by setting the neighbour-list entry to −1. An excluded neighbour is
  therefore an empty slot, so a placeholder block contributes ``sel`` empty slots — exactly what the
  native model does with blocks that never hold edges.
* Empty slots: raw row 0, standardised ``(0 − davg)/dstd``, passed through the (centre, block)
  embedding net and divided by ``sum(sel)`` like filled ones.
* ``davg``/``dstd`` are ``[2T, sum(sel), 4]``, identical along the slot axis; rows of real centre
  types become ``env_mean``/``env_std``. Virtual atoms are centres in DeePMD-kit but
  ``atom_exclude_types`` multiplies their energies by zero (bias included), so their statistics,
  embedding nets (centre types ≥ T) and fitting nets do not enter any output; they are written as
  mean 0 / std 1 and zero-weight nets.
* Embedding nets are a ``NetworkCollection`` with flat index ``ti + tb * 2T`` (``ndim = 2``) or ``tb``
  (``type_one_side``, ``ndim = 1``); the native index is ``ti * 2T + tb``.
* Layers: ``y = tanh(x W + b) [* idt] [+ x | + (x, x)]``; DeePMD-kit only creates ``idt`` on layers
  with a skip connection, the native model has a timestep on every hidden layer of a net with
  ``resnet_dt``: reading sets the extra timesteps to 1, writing stores them as ``idt``, which
  DeePMD-kit's layers multiply whenever present.
* Per-type energy bias: DeePMD-kit adds ``fitting.bias_atom_e[t]`` and the atomic model's
  ``out_bias[t]``; the native ``energy_bias`` is their sum (written as ``out_bias``, ``bias_atom_e = 0``).
* Outputs: ``force = F_real + F_virtual`` and ``force_mag = η F_virtual = −∂E/∂S`` are the native
  ``forces`` and ``torques``.

Where the native model differs (the conversion is exact regardless): it never builds the virtual
centres or the placeholder pseudo-atoms (DeePMD-kit puts them on top of their real atoms and excludes
them); it raises where a block holds more than ``sel`` neighbours (DeePMD-kit keeps the nearest ``sel``);
its ``stress`` is ASE's symmetric (Voigt) one, while DeePMD-kit's spin virial at fixed spins also has
an antisymmetric part (the symmetric parts agree); DeePMD-kit's LAMMPS pair style only sees the
pseudo-atom of an atom inside rcut + skin, so the skin must cover the largest η|S|.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..version import __version__
from ..model.deepspin import DeepSpinModel, ModelConfig

__all__ = [
    "DeepMDFormatError",
    "dp_dict_from_model",
    "is_deepmd_file",
    "load_dp_file",
    "model_from_dp_dict",
    "read_deepmd",
    "save_dp_file",
    "write_deepmd",
]


class DeepMDFormatError(ValueError):
    """A DeePMD-kit model file is unreadable or describes a model this package cannot represent exactly."""


# ----------------------------------------------------------------------------------- container
def _walk_variables(node, fn, inside=False):
    """Apply ``fn`` to every leaf under an ``@variables`` key (lists and dicts are rebuilt)."""
    if isinstance(node, dict):
        return {k: _walk_variables(v, fn, inside or k == "@variables") for k, v in node.items()}
    if isinstance(node, list):
        return [_walk_variables(v, fn, inside) for v in node]
    if node is None or not inside:
        return node
    return fn(node)


def _decoded_arrays(node):
    """A serialised model dictionary with DeePMD-kit's inline arrays (``{"@class": "np.ndarray", "dtype",
    "value"}``, as in ``.yaml`` files and ``.pt2`` archives) turned into NumPy arrays."""
    if isinstance(node, dict):
        if node.get("@class") == "np.ndarray":
            return np.asarray(node["value"], dtype=np.dtype(node["dtype"]))
        return {k: _decoded_arrays(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_decoded_arrays(v) for v in node]
    return node


def load_dp_file(path: str | os.PathLike) -> dict:
    """The model dictionary of a DeePMD-kit ``.dp``/``.hlo`` (HDF5) or ``.yaml`` serialized file, arrays as NumPy."""
    path = Path(path)
    if not path.is_file():
        raise DeepMDFormatError(f"DeePMD-kit model file not found: {path}")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        with open(path) as f:
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

        return _decoded_arrays(data)
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "json" not in f.attrs:
                raise DeepMDFormatError(f"{path} is HDF5 but has no 'json' attribute: not a DeePMD-kit .dp file")
            data = json.loads(f.attrs["json"])
            return _walk_variables(data, lambda name: np.array(f[name][()]))
    except OSError as err:
        raise DeepMDFormatError(f"{path} is not a readable HDF5 (.dp) file: {err}") from err


def save_dp_file(data: dict, path: str | os.PathLike) -> None:
    """Write a model dictionary as a DeePMD-kit ``.dp`` (HDF5) file."""
    import h5py

    path = Path(path)
    if path.suffix not in (".dp", ".hlo"):
        raise DeepMDFormatError(f"DeePMD-kit serialized files end in .dp, got {path.name}")
    with h5py.File(path, "w") as f:
        counter = iter(range(10**6))

        def store(array):
            return f.create_dataset(f"variable_{next(counter):04d}", data=np.asarray(array)).name

        f.attrs["json"] = json.dumps(_walk_variables(data, store), separators=(",", ":"))


# ----------------------------------------------------------------------------------- reading
def _require(cond, message):
    if not cond:
        raise DeepMDFormatError(message)


def _symmetric_pairs(pairs) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in pairs} | {(int(b), int(a)) for a, b in pairs}


def _net_layers(net, what, n_layers):
    _require(net is not None, f"{what} is missing (DeePMD-kit cleared it); cannot represent the model")
    layers = net["layers"]
    _require(len(layers) == n_layers, f"{what} has {len(layers)} layers, expected {n_layers}")
    return layers


def _copy_layer(layer: dict, target, what: str, hidden: bool) -> None:
    """Copy one serialized DeePMD-kit layer into a native :class:`DenseLayer`, checking its rule."""
    act = layer.get("activation_function")
    v = layer["@variables"]
    w, b, idt = v.get("w"), v.get("b"), v.get("idt")
    _require(w is not None, f"{what}: no weight matrix")
    if hidden:
        _require(str(act).lower() == "tanh", f"{what}: activation '{act}' (only tanh is supported)")
        n_in, n_out = w.shape
        residual_possible = n_out in (n_in, 2 * n_in)
        _require(bool(layer.get("resnet")) or not residual_possible,
                 f"{what}: a layer without skip connection where DeePMD-kit's rule would add one")
    else:
        _require(act in (None, "none", "linear", "None"), f"{what}: output layer activation '{act}'")
        _require(not layer.get("resnet"), f"{what}: residual output layer")
    _require(tuple(target.weight.shape) == tuple(w.shape),
             f"{what}: weight shape {w.shape}, expected {tuple(target.weight.shape)}")
    _require(b is not None, f"{what}: layers without bias are not supported")
    with torch.no_grad():
        target.weight.copy_(torch.as_tensor(np.asarray(w, dtype=np.float64)))
        target.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1)))
        if target.timestep is not None:
            target.timestep.copy_(torch.ones_like(target.timestep) if idt is None
                                  else torch.as_tensor(np.asarray(idt, dtype=np.float64).reshape(-1)))
        else:
            _require(idt is None, f"{what}: has a timestep (idt) but its net has resnet_dt = false")


def model_from_dp_dict(data: dict) -> DeepSpinModel:
    """Native float64 model from a DeePMD-kit serialized spin se_e2_a model dictionary.

    Raises :class:`DeepMDFormatError` naming the first feature the native model cannot reproduce exactly.
    """
    model = data.get("model", data)
    _require(model.get("type") == "spin_ener",
             f"not a DeePMD-kit spin energy model (model type '{model.get('type')}', expected 'spin_ener')")
    spin, bb = model["spin"], model["backbone_model"]
    _require(bb.get("type", "standard") == "standard", f"backbone model type '{bb.get('type')}' is not supported")
    desc, fit = bb["descriptor"], bb["fitting"]
    _require(desc.get("type") == "se_e2_a", f"descriptor '{desc.get('type')}': only se_e2_a is supported")
    _require(not desc.get("compress"),
             "compressed (tabulated) models are not supported; convert the uncompressed model")

    use_spin = [bool(u) for u in spin["use_spin"]]
    n = len(use_spin)
    n2 = 2 * n
    full_map = list(bb["type_map"])
    _require(len(full_map) == n2 and all(full_map[n + t] == f"{full_map[t]}_spin" for t in range(n)),
             f"type map {full_map} is not the doubled spin type map of {n} real types")
    scale = np.asarray(spin["virtual_scale"], dtype=np.float64).reshape(-1)
    if len(scale) == 1:
        scale = np.full(n, scale[0])
    _require(len(scale) == n, f"virtual_scale {spin['virtual_scale']} does not give one value per type")
    for t in range(n):
        _require(not use_spin[t] or scale[t] > 0,
                 f"type {full_map[t]} uses spin with virtual_scale {scale[t]}; it must be > 0")
    virtual_scale = [float(scale[t]) if use_spin[t] else 0.0 for t in range(n)]

    # exclusions: only those DeePMD-kit adds for the spin placeholders can be represented
    placeholders = [n + t for t in range(n) if not use_spin[t]]
    spin_pairs = _symmetric_pairs([(p, t) for p in placeholders for t in range(n2)])
    for where, pairs in (("model pair_exclude_types", bb.get("pair_exclude_types", [])),
                         ("descriptor exclude_types", desc.get("exclude_types", []))):
        extra = _symmetric_pairs(pairs) - spin_pairs
        _require(not extra, f"{where} has pairs beyond the spin placeholders: {sorted(extra)}")
    _require(spin_pairs <= _symmetric_pairs(bb.get("pair_exclude_types", [])) or not placeholders,
             "model pair_exclude_types lacks the spin placeholder pairs")
    for where, types in (("atom_exclude_types", bb.get("atom_exclude_types", [])),
                         ("fitting exclude_types", fit.get("exclude_types", []))):
        _require(all(int(t) >= n for t in types), f"{where} {types} excludes real types")

    env_mat = desc.get("env_mat", {})
    _require(not env_mat.get("use_exp_switch", False), "the exponential switch is not supported")
    _require(str(desc.get("activation_function", "tanh")).lower() == "tanh",
             f"descriptor activation '{desc.get('activation_function')}' (only tanh)")
    sel = [int(s) for s in desc["sel"]]
    _require(len(sel) == n2, f"sel {sel} needs one entry per doubled type ({n2})")

    _require(int(fit.get("numb_fparam", 0)) == 0 and int(fit.get("numb_aparam", 0)) == 0,
             "frame/atomic parameters (numb_fparam/numb_aparam) are not supported")
    _require(int(fit.get("dim_case_embd", 0) or 0) == 0, "case embeddings (multi-task) are not supported")
    _require(not fit.get("mixed_types", False), "mixed-type fitting is not supported for se_e2_a")
    _require(not fit.get("atom_ener"), "fitting atom_ener (vacuum energy removal) is not supported")
    _require(int(fit.get("dim_out", 1)) == 1 and fit.get("var_name", "energy") == "energy", "not an energy fitting")

    neuron = [int(v) for v in desc["neuron"]]
    config = ModelConfig(
        type_map=full_map[:n], virtual_scale=virtual_scale, rcut=float(desc["rcut"]),
        rcut_smth=float(desc["rcut_smth"]), sel=sel, neuron=neuron, axis_neuron=int(desc["axis_neuron"]),
        fitting_neuron=[int(v) for v in fit["neuron"]], resnet_dt=bool(fit["resnet_dt"]),
        embedding_resnet_dt=bool(desc.get("resnet_dt", False)),
        env_protection=float(desc.get("env_protection", env_mat.get("protection", 0.0))),
        time_reversal=False,
    )
    seed = data.get("model_def_script", {}).get("descriptor", {}).get("seed")
    if isinstance(seed, int):  # the initialisation seed only; kept so that round trips give equal configs
        config.seed = seed
    _require(int(fit["dim_descrpt"]) == neuron[-1] * config.axis_neuron,
             "fitting dim_descrpt does not match the descriptor")
    out = DeepSpinModel(config)

    davg, dstd = (np.asarray(desc["@variables"][k], dtype=np.float64) for k in ("davg", "dstd"))
    _require(davg.shape == (n2, sum(sel), 4) and dstd.shape == davg.shape,
             f"davg/dstd shape {davg.shape}, expected {(n2, sum(sel), 4)}")
    for name, arr in (("davg", davg), ("dstd", dstd)):
        _require(np.array_equal(arr[:n], np.broadcast_to(arr[:n, :1], arr[:n].shape)),
                 f"{name} differs between neighbour slots; only per-type statistics are supported")
    with torch.no_grad():
        out.descriptor.env_mean.copy_(torch.as_tensor(davg[:n, 0]))
        out.descriptor.env_std.copy_(torch.as_tensor(dstd[:n, 0]))

    emb = desc["embeddings"]
    ndim = int(emb["ndim"])
    _require(int(emb["ntypes"]) == n2 and ndim == (1 if desc.get("type_one_side") else 2),
             "embedding collection does not match the doubled type map")
    for ti in range(n):
        for tb in range(n2):
            index = tb if ndim == 1 else ti + tb * n2
            what = f"embedding net ({full_map[ti]}, {full_map[tb]})"
            layers = _net_layers(emb["networks"][index], what, len(neuron))
            for k, layer in enumerate(layers):
                _copy_layer(layer, out.descriptor.embedding[ti * n2 + tb][k], f"{what} layer {k}", hidden=True)

    nets = fit["nets"]
    _require(int(nets["ndim"]) == 1 and int(nets["ntypes"]) == n2, "fitting collection is not one net per type")
    for t in range(n):
        what = f"fitting net of {full_map[t]}"
        layers = _net_layers(nets["networks"][t], what, len(config.fitting_neuron) + 1)
        for k, layer in enumerate(layers):
            _copy_layer(layer, out.fitting[t][k], f"{what} layer {k}", hidden=k < len(layers) - 1)

    bias = np.zeros(n)
    if fit["@variables"].get("bias_atom_e") is not None:
        bias += np.asarray(fit["@variables"]["bias_atom_e"], dtype=np.float64).reshape(n2, -1)[:n, 0]
    out_bias = bb.get("@variables", {}).get("out_bias")
    if out_bias is not None:
        out_bias = np.asarray(out_bias, dtype=np.float64)
        _require(out_bias.shape[0] == 1 and out_bias.shape[1] == n2, f"out_bias shape {out_bias.shape}")
        bias += out_bias[0, :n, 0]
    with torch.no_grad():
        out.energy_bias.copy_(torch.as_tensor(bias))
    return out


# ----------------------------------------------------------------------------------- writing
def _layer_dict(weight, bias, timestep, activation, resnet) -> dict:
    return {"@class": "Layer", "@version": 2, "bias": True, "use_timestep": timestep is not None,
            "activation_function": activation, "resnet": resnet, "precision": "float64", "trainable": True,
            "@variables": {"w": weight, "b": bias, "idt": timestep}}


def _numpy(t):
    return None if t is None else t.detach().cpu().double().numpy().copy()


def _embedding_dict(net, neuron, resnet_dt) -> dict:
    layers = [_layer_dict(_numpy(l.weight), _numpy(l.bias), _numpy(l.timestep), "tanh", True) for l in net]
    return {"@class": "EmbeddingNetwork", "@version": 2, "in_dim": 1, "neuron": list(neuron),
            "activation_function": "tanh", "resnet_dt": resnet_dt, "bias": True, "precision": "float64",
            "layers": layers}


def _fitting_dict(net, n_in, neuron, resnet_dt) -> dict:
    layers = [_layer_dict(_numpy(l.weight), _numpy(l.bias), _numpy(l.timestep), "tanh", True) for l in net[:-1]]
    last = net[-1]
    layers.append(_layer_dict(_numpy(last.weight), _numpy(last.bias), None, "none", False))
    return {"@class": "FittingNetwork", "@version": 1, "in_dim": n_in, "out_dim": 1, "neuron": list(neuron),
            "activation_function": "tanh", "resnet_dt": resnet_dt, "precision": "float64", "bias_out": True,
            "layers": layers}


def _zeroed(d: dict) -> dict:
    """The same network with every array zeroed (nets of virtual centres, whose outputs are masked)."""
    return _walk_variables(d, lambda a: np.zeros_like(a))


def dp_dict_from_model(model: DeepSpinModel) -> dict:
    """DeePMD-kit 3.x serialized dictionary (PyTorch-backend layout) of a native model, float64."""
    cfg = model.config
    if cfg.descriptor != "pseudo_atom":
        raise DeepMDFormatError(f"this model's descriptor is {cfg.descriptor!r} (ModelConfig.descriptor), which "
                                "DeePMD-kit cannot represent; only pseudo-atom (se_e2_a spin) models can be exported")
    if cfg.spin_baseline is not None:
        raise DeepMDFormatError("this model has a spin baseline (ModelConfig.spin_baseline), which DeePMD-kit "
                                "cannot represent; only models trained without one can be exported")
    if cfg.time_reversal:
        raise DeepMDFormatError("this model is symmetrised under time reversal (ModelConfig.time_reversal: its "
                                "energy averages the network over S and -S), which DeePMD-kit's spin models "
                                "cannot represent; train with spin.time_reversal: false to export to DeePMD-kit")
    if cfg.short_range is not None:
        raise DeepMDFormatError("this model has a ZBL short-range wall (ModelConfig.short_range), which "
                                "DeePMD-kit's spin models cannot carry; train without model.short_range to export")
    n, n2 = cfg.n_types, 2 * cfg.n_types
    full_map = list(cfg.type_map) + [f"{t}_spin" for t in cfg.type_map]
    use_spin = list(cfg.magnetic)
    placeholders = [n + t for t in range(n) if not use_spin[t]]
    pair_exclude = [[p, t] for p in placeholders for t in range(n2)]
    virtual_types = list(range(n, n2))
    n_slots = sum(cfg.sel)

    embeddings = [None] * (n2 * n2)
    for ti in range(n2):
        for tb in range(n2):
            source = model.descriptor.embedding[(ti % n) * n2 + tb]
            d = _embedding_dict(source, cfg.neuron, cfg.embedding_resnet_dt)
            embeddings[ti + tb * n2] = d if ti < n else _zeroed(d)
    n_desc = cfg.neuron[-1] * cfg.axis_neuron
    fitting_nets = []
    for t in range(n2):
        d = _fitting_dict(model.fitting[t % n], n_desc, cfg.fitting_neuron, cfg.resnet_dt)
        fitting_nets.append(d if t < n else _zeroed(d))

    davg = np.zeros((n2, n_slots, 4))
    dstd = np.ones((n2, n_slots, 4))
    davg[:n] = _numpy(model.descriptor.env_mean)[:, None, :]
    dstd[:n] = _numpy(model.descriptor.env_std)[:, None, :]
    out_bias = np.zeros((1, n2, 1))
    out_bias[0, :n, 0] = _numpy(model.energy_bias)

    descriptor = {
        "@class": "Descriptor", "type": "se_e2_a", "@version": 2, "rcut": cfg.rcut, "rcut_smth": cfg.rcut_smth,
        "sel": list(cfg.sel), "neuron": list(cfg.neuron), "axis_neuron": cfg.axis_neuron,
        "resnet_dt": cfg.embedding_resnet_dt, "set_davg_zero": False, "activation_function": "tanh",
        "precision": "float64",
        "embeddings": {"@class": "NetworkCollection", "@version": 1, "ndim": 2, "ntypes": n2,
                       "network_type": "embedding_network", "networks": embeddings},
        "env_mat": {"rcut": cfg.rcut, "rcut_smth": cfg.rcut_smth, "protection": cfg.env_protection,
                    "use_exp_switch": False},
        "exclude_types": pair_exclude, "env_protection": cfg.env_protection,
        "@variables": {"davg": davg, "dstd": dstd}, "type_map": full_map, "trainable": True,
        "type_one_side": False, "spin": None,
    }
    fitting = {
        "@class": "Fitting", "@version": 4, "var_name": "energy", "ntypes": n2, "dim_descrpt": n_desc,
        "neuron": list(cfg.fitting_neuron), "resnet_dt": cfg.resnet_dt, "numb_fparam": 0, "numb_aparam": 0,
        "dim_case_embd": 0, "default_fparam": None, "activation_function": "tanh", "precision": "float64",
        "mixed_types": False,
        "nets": {"@class": "NetworkCollection", "@version": 1, "ndim": 1, "ntypes": n2,
                 "network_type": "fitting_network", "networks": fitting_nets},
        "rcond": None, "exclude_types": virtual_types,
        "@variables": {"bias_atom_e": np.zeros((n2, 1)), "case_embd": None, "fparam_avg": None,
                       "fparam_inv_std": None, "aparam_avg": None, "aparam_inv_std": None},
        "type_map": full_map, "tot_ener_zero": False, "trainable": [True] * (len(cfg.fitting_neuron) + 1),
        "layer_name": None, "use_aparam_as_mask": False, "spin": None, "type": "ener", "dim_out": 1,
        "atom_ener": [],
    }
    backbone = {
        "type_map": full_map, "atom_exclude_types": virtual_types, "pair_exclude_types": pair_exclude,
        "rcond": None, "preset_out_bias": None,
        "@variables": {"out_bias": out_bias, "out_std": np.ones((1, n2, 1))},
        "@class": "Model", "@version": 2, "type": "standard", "descriptor": descriptor, "fitting": fitting,
    }
    spin_scales = [v for v, m in zip(cfg.virtual_scale, use_spin) if m]
    # the training input DeePMD-kit would have been given (DeePMD-kit stores it with frozen models)
    model_def_script = {
        "type_map": list(cfg.type_map),
        "descriptor": {"type": "se_e2_a", "sel": list(cfg.sel[:n]), "rcut_smth": cfg.rcut_smth, "rcut": cfg.rcut,
                       "neuron": list(cfg.neuron), "resnet_dt": cfg.embedding_resnet_dt,
                       "axis_neuron": cfg.axis_neuron, "type_one_side": False, "precision": "float64",
                       "seed": cfg.seed,
                       "env_protection": cfg.env_protection, "activation_function": "tanh"},
        "fitting_net": {"type": "ener", "neuron": list(cfg.fitting_neuron), "resnet_dt": cfg.resnet_dt,
                        "precision": "float64", "activation_function": "tanh"},
        "spin": {"use_spin": use_spin, "virtual_scale": spin_scales},
    }
    if cfg.sel[n:] != cfg.sel[:n]:
        # DeePMD-kit's input repeats the real-type sel for the pseudo-types; the serialized model is exact anyway
        model_def_script["descriptor"]["sel"] = list(cfg.sel)
    return {
        "software": "ase-deepspin", "version": __version__,
        "time": str(datetime.datetime.now(tz=datetime.timezone.utc)), "backend": "ase-deepspin",
        "model": {"type": "spin_ener", "backbone_model": backbone,
                  "spin": {"use_spin": use_spin, "virtual_scale": list(cfg.virtual_scale)}},
        "model_def_script": model_def_script, "@variables": {},
    }


# ----------------------------------------------------------------------------------- PyTorch backend files
def _dict_from_state(state: dict, params: dict) -> dict:
    """Serialized-model dictionary from a PyTorch-backend state dict and its model parameters."""
    prefix = next((k[: -len("atomic_model.out_bias")] for k in state if k.endswith("atomic_model.out_bias")), None)
    _require(prefix is not None, "no atomic_model.out_bias in the state dict: not a DeePMD-kit PyTorch model")
    _require("spin" in params, "the model parameters have no 'spin' section: not a spin model")
    am = prefix + "atomic_model."

    def arr(key):
        return None if key not in state else state[key].detach().cpu().double().numpy()

    def net(base, n_layers):
        layers = []
        for k in range(n_layers):
            p = f"{base}.layers.{k}."
            layers.append({"activation_function": None, "resnet": None,
                           "@variables": {"w": arr(p + "matrix"), "b": arr(p + "bias"), "idt": arr(p + "idt")}})
        return {"layers": layers}

    type_map = list(params["type_map"])
    half = len(type_map) // 2
    doubled = len(type_map) % 2 == 0 and type_map[half:] == [f"{t}_spin" for t in type_map[:half]]
    n = half if doubled else len(type_map)  # frozen models store the expanded (doubled) parameters
    real = type_map[:n]
    use_spin = list(params["spin"]["use_spin"])
    if use_spin and not isinstance(use_spin[0], bool):  # DeePMD-kit also accepts type indices or symbols
        names = {real[u] if isinstance(u, int) else u for u in use_spin}
        use_spin = [t in names for t in real]
    scale = params["spin"]["virtual_scale"]
    scale = [scale] * n if isinstance(scale, (int, float)) else list(scale)
    if len(scale) != n:  # one value per magnetic type
        given = iter(scale)
        scale = [next(given) if u else 0.0 for u in use_spin]
    d = params["descriptor"]
    _require(d.get("type") == "se_e2_a", f"descriptor '{d.get('type')}': only se_e2_a is supported")
    _require(isinstance(d["sel"], list), f"descriptor sel {d['sel']!r} is not a resolved list")
    sel = list(d["sel"])
    sel = sel + sel if len(sel) == n else sel
    neuron, fneuron = list(d["neuron"]), list(params["fitting_net"].get("neuron", [120, 120, 120]))
    protection = float(d.get("env_protection", 0.0)) or 0.01  # DeePMD-kit's spin models force 0.01 if unset
    n2 = 2 * n
    full_map = real + [f"{t}_spin" for t in real]
    placeholders = [n + t for t in range(n) if not use_spin[t]]
    pairs = [[p, t] for p in placeholders for t in range(n2)] + list(params.get("pair_exclude_types", []))
    type_one_side = bool(d.get("type_one_side", False))
    n_emb = n2 if type_one_side else n2 * n2
    emb_nets = [net(f"{am}descriptor.sea.filter_layers.networks.{i}", len(neuron)) for i in range(n_emb)]
    for e in emb_nets:
        for layer in e["layers"]:
            layer["activation_function"] = d.get("activation_function", "tanh")
            layer["resnet"] = True
    fit_nets = [net(f"{am}fitting_net.filter_layers.networks.{t}", len(fneuron) + 1) for t in range(n2)]
    f = params["fitting_net"]
    for fn in fit_nets:
        for k, layer in enumerate(fn["layers"]):
            last = k == len(fn["layers"]) - 1
            layer["activation_function"] = "none" if last else f.get("activation_function", "tanh")
            layer["resnet"] = not last
    for key in (f"{am}descriptor.sea.mean", f"{am}fitting_net.bias_atom_e"):
        _require(key in state, f"state dict lacks {key}")
    return {"model": {
        "type": "spin_ener",
        "spin": {"use_spin": use_spin, "virtual_scale": scale},
        "backbone_model": {
            "type": "standard", "type_map": full_map, "pair_exclude_types": pairs,
            "atom_exclude_types": list(range(n, n2)) + list(params.get("atom_exclude_types", [])),
            "@variables": {"out_bias": arr(f"{am}out_bias")},
            "descriptor": {
                "type": "se_e2_a", "rcut": d["rcut"], "rcut_smth": d["rcut_smth"], "sel": sel, "neuron": neuron,
                "axis_neuron": d.get("axis_neuron", 4), "resnet_dt": d.get("resnet_dt", False),
                "activation_function": d.get("activation_function", "tanh"), "type_one_side": type_one_side,
                "exclude_types": pairs, "env_protection": protection,
                "@variables": {"davg": arr(f"{am}descriptor.sea.mean"), "dstd": arr(f"{am}descriptor.sea.stddev")},
                "embeddings": {"ndim": 1 if type_one_side else 2, "ntypes": n2, "networks": emb_nets},
            },
            "fitting": {
                "neuron": fneuron, "resnet_dt": f.get("resnet_dt", True), "numb_fparam": f.get("numb_fparam", 0),
                "numb_aparam": f.get("numb_aparam", 0), "dim_case_embd": f.get("dim_case_embd", 0),
                "atom_ener": f.get("atom_ener", []), "dim_descrpt": neuron[-1] * d.get("axis_neuron", 4),
                "exclude_types": list(range(n, n2)),
                "nets": {"ndim": 1, "ntypes": n2, "networks": fit_nets},
                "@variables": {"bias_atom_e": arr(f"{am}fitting_net.bias_atom_e")},
            },
        },
    }}


def _params_from_module(scripted, path: Path) -> dict:
    """Model parameters of a frozen spin model from its modules' attributes.

    ``dp convert-backend`` leaves a frozen module's model definition empty; every setting the model
    needs is an attribute of its submodules (checked in DeePMD-kit 3.2.0's ``deepmd/pt``). A missing
    attribute is an error: a default in its place changes the model (env_protection 0.01 instead of
    the file's 1e-6 moves the energy of a NiO cell by 0.30 eV).
    """
    def attribute(module, name, where):
        try:
            return getattr(module, name)
        except (AttributeError, RuntimeError):
            raise DeepMDFormatError(f"{path}: the frozen module has no {where}.{name}; not a DeePMD-kit 3.x spin "
                                    "se_e2_a model") from None

    atomic = attribute(attribute(scripted, "backbone_model", "model"), "atomic_model", "backbone_model")
    descriptor = attribute(atomic, "descriptor", "atomic_model")
    fitting = attribute(atomic, "fitting_net", "atomic_model")
    kind = getattr(descriptor, "original_name", "?")
    _require(kind == "DescrptSeA", f"{path}: descriptor {kind}; only se_e2_a (DescrptSeA) is supported")
    sea = attribute(descriptor, "sea", "descriptor")

    def layers(nets, where):
        first = next(iter(attribute(nets, "networks", where).children()), None)
        _require(first is not None, f"{path}: {where} has no networks")
        return list(attribute(first, "layers", where + ".networks.0").children())

    embedding = layers(attribute(sea, "filter_layers", "descriptor.sea"), "descriptor.sea.filter_layers")
    fitting_layers = layers(attribute(fitting, "filter_layers", "fitting_net"), "fitting_net.filter_layers")
    type_map = list(attribute(atomic, "type_map", "atomic_model"))
    n_all = len(type_map)
    pair_mask = attribute(attribute(atomic, "pair_excl", "atomic_model"), "type_mask", "pair_excl").tolist()
    atom_mask = attribute(attribute(atomic, "atom_excl", "atomic_model"), "type_mask", "atom_excl").tolist()
    n_real = int(attribute(scripted, "ntypes_real", "model"))
    return {
        "type_map": type_map,
        "spin": {"use_spin": [bool(v) for v in attribute(scripted, "spin_mask", "model").tolist()],
                 "virtual_scale": [float(v) for v in attribute(scripted, "virtual_scale_mask", "model").tolist()]},
        "descriptor": {"type": "se_e2_a", "sel": list(attribute(atomic, "sel", "atomic_model")),
                       "rcut": float(attribute(sea, "rcut", "descriptor.sea")),
                       "rcut_smth": float(attribute(sea, "rcut_smth", "descriptor.sea")),
                       "neuron": list(attribute(sea, "filter_neuron", "descriptor.sea")),
                       "axis_neuron": int(attribute(sea, "axis_neuron", "descriptor.sea")),
                       "env_protection": float(attribute(sea, "env_protection", "descriptor.sea")),
                       "type_one_side": bool(attribute(sea, "type_one_side", "descriptor.sea")),
                       "activation_function": str(attribute(attribute(embedding[0], "activate", "embedding layer"),
                                                            "activation", "embedding layer.activate")),
                       "resnet_dt": any(getattr(layer, "idt", None) is not None for layer in embedding)},
        "fitting_net": {"neuron": [int(attribute(layer, "matrix", "fitting layer").shape[1])
                                   for layer in fitting_layers[:-1]],
                        "activation_function": str(attribute(attribute(fitting_layers[0], "activate", "fitting layer"),
                                                             "activation", "fitting layer.activate")),
                        "resnet_dt": any(getattr(layer, "idt", None) is not None for layer in fitting_layers),
                        "numb_fparam": int(attribute(fitting, "numb_fparam", "fitting_net")),
                        "numb_aparam": int(attribute(fitting, "numb_aparam", "fitting_net")),
                        "dim_case_embd": int(attribute(fitting, "dim_case_embd", "fitting_net"))},
        # the backbone's exclusions over the doubled types, placeholders included (set again from use_spin)
        "pair_exclude_types": [[a, b] for a in range(n_all) for b in range(a, n_all)
                               if pair_mask[a * (n_all + 1) + b] == 0],
        "atom_exclude_types": [t for t in range(n_real) if atom_mask[t] == 0],
    }


def _read_torch(path: Path) -> dict:
    if path.suffix == ".pth":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as err:
            raise DeepMDFormatError(f"{path} is not a frozen DeePMD-kit PyTorch model: {err}") from err
        return _dict_from_state(scripted.state_dict(), _params_from_module(scripted, path))
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    _require(isinstance(state, dict) and "_extra_state" in state,
             f"{path} is not a DeePMD-kit PyTorch checkpoint (no model/_extra_state)")
    extra = state["_extra_state"]
    params = extra["model_params"]
    _require("spin" in params or "model_dict" not in params, f"{path} is a multi-task checkpoint; not supported")
    return _dict_from_state({k: v for k, v in state.items() if k != "_extra_state"}, params)


PT2_MODEL_ENTRY = "model/extra/model.json"  # where DeePMD-kit's .pt2 archives keep the serialised model


def _read_pt2(path: Path) -> dict:
    """The serialised model dictionary inside a DeePMD-kit ``.pt2`` archive (as in a ``.dp`` file; arrays
    are stored as ``{"@class": "np.ndarray", "dtype", "value"}``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entry = next((n for n in archive.namelist() if n.endswith(PT2_MODEL_ENTRY)), None)
            _require(entry is not None, f"{path} holds no {PT2_MODEL_ENTRY}: not a DeePMD-kit .pt2 model archive")
            data = json.loads(archive.read(entry))
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise DeepMDFormatError(f"{path} is not a readable DeePMD-kit .pt2 archive: {err}") from None

    return _decoded_arrays(data)


TENSORFLOW_SUFFIXES = (".pb", ".pbtxt")


def tensorflow_graph_message(path) -> str:
    """The refusal of a DeePMD-kit TensorFlow graph, with the conversion that makes it readable."""
    return (f"{path} is a TensorFlow graph (DeePMD-kit's TensorFlow backend), which ase-deepspin does not run; "
            f"`dp convert-backend {Path(path).name} model.dp` (DeePMD-kit with TensorFlow) writes the backend-neutral "
            "file that it reads")


def is_deepmd_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a DeePMD-kit model (.dp/.hlo/.yaml/.pth, or a .pt DeePMD-kit checkpoint)."""
    path = Path(path)
    if path.suffix in (".dp", ".hlo", ".yaml", ".yml", ".pth", ".pt2") + TENSORFLOW_SUFFIXES:
        return True
    if path.suffix == ".pt" and path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError):
            return False  # not a readable torch file: the native reader will say why
        return is_deepmd_checkpoint(blob)
    return False


def is_deepmd_checkpoint(blob) -> bool:
    """Whether a loaded ``.pt`` object is a DeePMD-kit PyTorch training checkpoint."""
    return isinstance(blob, dict) and isinstance(blob.get("model", blob), dict) and \
        "_extra_state" in blob.get("model", blob)


def read_deepmd(path: str | os.PathLike) -> DeepSpinModel:
    """Native float64 model from a DeePMD-kit spin se_e2_a model file (.dp, .hlo, .yaml, .pt checkpoint, frozen
    .pth from ``dp freeze`` or ``dp convert-backend``, .pt2 archive); TensorFlow graphs are refused by name."""
    path = Path(path)
    if not path.is_file():
        raise DeepMDFormatError(f"DeePMD-kit model file not found: {path}")
    if path.suffix in TENSORFLOW_SUFFIXES:
        raise DeepMDFormatError(tensorflow_graph_message(path))
    if path.suffix in (".pt", ".pth"):
        data = _read_torch(path)
    elif path.suffix == ".pt2":
        data = _read_pt2(path)
    else:
        data = load_dp_file(path)
    model = model_from_dp_dict(data)
    model.provenance = {"converted_from": f"DeePMD-kit {path.name}"}
    return model


def write_deepmd(model: DeepSpinModel, path: str | os.PathLike) -> None:
    """Write a native model as a DeePMD-kit ``.dp`` file (turn it into ``.pth`` with ``dp convert-backend``)."""
    save_dp_file(dp_dict_from_model(model), path)
