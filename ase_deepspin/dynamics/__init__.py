"""Spin and spin-lattice dynamics and minimisation for any calculator with magnetic torques."""

from .llg import SpinLatticeDynamics, sib_step, thermal_field_std
from ..units import GAMMA_RAD_PER_FS_T
from .longitudinal import LongitudinalSpinLatticeDynamics, longitudinal_step
from .minimize import DampedPrecession, SpinFIRE, SpinLatticeOptimizable, SpinLBFGS, relax_spins

__all__ = ["GAMMA_RAD_PER_FS_T", "SpinLatticeDynamics", "LongitudinalSpinLatticeDynamics", "longitudinal_step",
           "sib_step", "thermal_field_std", "DampedPrecession", "SpinFIRE", "SpinLatticeOptimizable", "SpinLBFGS", "relax_spins"]
