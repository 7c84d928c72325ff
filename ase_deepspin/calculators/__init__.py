"""ASE calculators with magnetic torques: the machine-learned model (and committees of them) and the analytic
spin Hamiltonian."""

from .deepspin import DeepSpinCalculator
from .hamiltonian import SpinHamiltonian

__all__ = ["DeepSpinCalculator", "SpinHamiltonian"]
