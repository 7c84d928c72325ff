"""File formats and converters: model files, DeePMD-kit models, the TorchScript module for LAMMPS, LAMMPS
data and inputs, training frames."""

from .deepmd import DeepMDFormatError, read_deepmd, write_deepmd
from .model_file import ModelFileError, load_model, pretrained_models, resolve_model_path, save_model

__all__ = ["DeepMDFormatError", "ModelFileError", "load_model", "pretrained_models", "read_deepmd",
           "resolve_model_path", "save_model", "write_deepmd"]
