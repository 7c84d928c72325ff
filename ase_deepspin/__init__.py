"""ase-deepspin: DeepSPIN spin-lattice machine-learning potentials in ASE."""

from .calculators import DeepSpinCalculator
from .model import DeepSpinModel, ModelConfig, compress_model
from .io import ModelFileError, load_model, pretrained_models, save_model
from .model.ranges import ExtrapolationWarning
from .version import __version__

__all__ = ["DeepSpinCalculator", "DeepSpinModel", "ExtrapolationWarning", "ModelConfig", "ModelFileError",
           "compress_model", "load_model", "pretrained_models", "save_model", "__version__"]
