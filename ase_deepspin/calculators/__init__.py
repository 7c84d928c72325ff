"""ASE calculators with magnetic torques: the machine-learned model (and committees of them), the analytic
spin Hamiltonian, the s–d exchange (Kondo-lattice) model of itinerant electrons and collinear DFT as a labeller."""

from .collinear_dft import CollinearDFT, gpaw_labeller
from .contract import SpinCalculator, check_spin_calculator
from .deepspin import DeepSpinCalculator
from .hamiltonian import SpinHamiltonian
from .sd_exchange import SdExchangeCalculator

__all__ = ["CollinearDFT", "DeepSpinCalculator", "SdExchangeCalculator", "SpinCalculator", "SpinHamiltonian",
           "check_spin_calculator", "gpaw_labeller"]
