"""Model files: one ``.pt`` holding a versioned JSON config and tensors only.

Files are read with ``torch.load(..., weights_only=True)``, so loading never unpickles arbitrary
objects. Layout: ``{"format": "ase-deepspin-model", "version": int, "config": json str,
"provenance": json str, "checksum": sha256 hex, "state_dict": {name: tensor}}`` (files written
before provenance and checksum existed have neither and load unverified).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

from ..version import __version__
from ..model.deepspin import FORMAT_VERSION, READABLE_VERSIONS, DeepSpinModel, ModelConfig

FORMAT_NAME = "ase-deepspin-model"
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
DESCRIPTOR_KEYS_BEFORE_5 = {"embedding", "tables", "env_mean", "env_std", "virtual_scale", "sel"}


class ModelFileError(ValueError):
    """A model file is missing, corrupt, of another format or of an unsupported version."""


def pretrained_models() -> list[str]:
    """Names of the models shipped with the package (usable as ``DeepSpinCalculator(name)``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def resolve_model_path(name: str | os.PathLike) -> Path:
    """A model file path: an existing file, else a shipped model named ``name`` (with or without .pt)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / (path.name if path.suffix == ".pt" else f"{path.name}.pt")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no model file '{name}' and no shipped model of that name "
                            f"(shipped: {', '.join(pretrained_models()) or 'none'})")


def checksum(config: str, provenance: str, state: dict) -> str:
    """SHA-256 (hex) of a model file's config and provenance JSON and of every tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(config.encode())
    digest.update(provenance.encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_model(model: DeepSpinModel, path: str | os.PathLike, storage_dtype: torch.dtype | None = None,
               provenance: dict | None = None) -> None:
    """Write ``model`` to ``path``; ``storage_dtype`` (e.g. ``torch.float32``) shrinks the file.

    The file records its provenance: ``model.provenance`` (what the model was made from: a training
    run's config, data, steps and held-out RMSE; a compression or conversion), updated by
    ``provenance``, plus the package version and time of writing; and a SHA-256 checksum of
    config, provenance and tensors that :func:`load_model` verifies.
    """
    state = {k: (v.to(storage_dtype) if storage_dtype is not None and v.is_floating_point() else v).detach().cpu()
             for k, v in model.state_dict().items()}
    record = {**getattr(model, "provenance", {}), **(provenance or {}), "package_version": __version__,
              "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    config, record = model.config.to_json(), json.dumps(record)
    torch.save({"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": config, "provenance": record,
                "checksum": checksum(config, record, state), "state_dict": state}, Path(path))


def load_model(path: str | os.PathLike, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> DeepSpinModel:
    """Read a model file written by :func:`save_model` (a path, or the name of a shipped model such as
    ``"nio"``); parameters cast to ``dtype`` on ``device``.

    DeePMD-kit spin models (.dp, .yaml, frozen .pth, .pt checkpoints) are read through
    :func:`~ase_deepspin.io.deepmd.read_deepmd`, exactly as ``ase-deepspin convert`` reads them;
    this package's own TorchScript exports for LAMMPS (.pth) give back the model they hold.
    """
    from .deepmd import is_deepmd_checkpoint, is_deepmd_file, read_deepmd

    from .torchscript import read_export_record, read_lammps_model

    try:
        path = resolve_model_path(path)
    except FileNotFoundError as err:
        raise ModelFileError(str(err)) from None
    if path.suffix == ".pth" and read_export_record(path) is not None:  # our own TorchScript export
        return read_lammps_model(path).to(device=device, dtype=dtype)
    if path.suffix != ".pt" and is_deepmd_file(path):  # by name; a .pt file is recognised once loaded
        return read_deepmd(path).to(device=device, dtype=dtype)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if zipfile.is_zipfile(path):  # a torch file whose pickle holds objects beyond tensors and containers
            raise ModelFileError(f"{path} holds Python objects that no ase-deepspin model file contains; it is "
                                 "refused (unpickling them could run arbitrary code)") from None
        raise ModelFileError(f"{path} is not a readable ase-deepspin model file (not a torch zip archive)") from None
    except Exception as err:  # torch reads a file that is no torch archive as a legacy pickle: any error at all
        raise ModelFileError(f"{path} is not a readable ase-deepspin model file ({err.__class__.__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from err
    if is_deepmd_checkpoint(blob):
        return read_deepmd(path).to(device=device, dtype=dtype)
    if isinstance(blob, dict) and {"model", "optimizer", "step", "config"} <= set(blob):
        raise ModelFileError(f"{path} is a training checkpoint, not a model file: write one with "
                             f"`ase-deepspin freeze {path} model.pt`")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not an ase-deepspin model file (no '{FORMAT_NAME}' header)")
    version = blob.get("version")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(f"{path} has model format version {version}; this ase-deepspin reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}")
    stored = blob.get("checksum")
    if stored is not None and (not isinstance(blob.get("state_dict"), dict) or stored != checksum(
            blob.get("config", ""), blob.get("provenance", ""), blob["state_dict"])):
        raise ModelFileError(f"{path} is corrupted: its config or tensors do not match the checksum written with "
                             "them (a damaged copy or download; fetch the file again)")
    try:
        raw = json.loads(blob["config"])
        if version < 4:  # written before time reversal existed: their networks are not symmetrised
            raw.setdefault("time_reversal", False)
        config = ModelConfig(**raw)
        model = DeepSpinModel(config, dtype=dtype)
        state = blob["state_dict"]
        if version < 5:  # the descriptor's tensors were the model's own before it became a submodule
            state = {(f"descriptor.{k}" if k.split(".")[0] in DESCRIPTOR_KEYS_BEFORE_5 else k): v
                     for k, v in state.items()}
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path} has an inconsistent config or weights: {err}") from err
    model.provenance = json.loads(blob.get("provenance") or "{}")
    return model.to(device)
