"""The DeepSPIN network: descriptor, fitting, energy model and model files."""

from .compress import compress_model
from .deepspin import DeepSpinModel, ModelConfig
from .deepmd import DeepMDFormatError, read_deepmd, write_deepmd
from .io import ModelFileError, load_model, save_model

__all__ = ["DeepMDFormatError", "DeepSpinModel", "ModelConfig", "ModelFileError", "compress_model", "load_model",
           "read_deepmd", "save_model", "write_deepmd"]
