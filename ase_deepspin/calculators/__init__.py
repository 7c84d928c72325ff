"""ASE calculators with magnetic torques: the machine-learned model (and committees of them), the analytic
spin Hamiltonian and the s–d exchange (Kondo-lattice) model of itinerant electrons."""

from .contract import SpinCalculator, check_spin_calculator
from .deepspin import DeepSpinCalculator
from .hamiltonian import SpinHamiltonian
from .sd_exchange import SdExchangeCalculator

__all__ = ["DeepSpinCalculator", "SdExchangeCalculator", "SpinCalculator", "SpinHamiltonian", "check_spin_calculator"]
