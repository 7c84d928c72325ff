"""The network: descriptors, fitting, the energy core and the physical terms beside it (no file formats)."""

from .compress import compress_model
from .deepspin import DeepSpinModel, ModelConfig

__all__ = ["DeepSpinModel", "ModelConfig", "compress_model"]
