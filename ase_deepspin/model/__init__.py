"""The DeepSPIN network: descriptor, fitting, energy model and model files."""

from .deepspin import DeepSpinModel, ModelConfig
from .io import ModelFileError, load_model, save_model
from .tabulation import compress_model

__all__ = ["DeepSpinModel", "ModelConfig", "ModelFileError", "compress_model", "load_model", "save_model"]
