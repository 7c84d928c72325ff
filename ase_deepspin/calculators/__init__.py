"""ASE calculators with magnetic torques: the machine-learned model (and committees of them) and the analytic
spin Hamiltonian."""

from .contract import SpinCalculator, check_spin_calculator
from .deepspin import DeepSpinCalculator
from .hamiltonian import SpinHamiltonian

__all__ = ["DeepSpinCalculator", "SpinCalculator", "SpinHamiltonian", "check_spin_calculator"]
