"""Physical constants in the package's units: eV, Å, fs, μB, Tesla, K (one place for all of them)."""

from ase import units as _ase

MU_B_EV_PER_T = 5.7883818060e-5  # Bohr magneton, eV/T (CODATA 2018)
GAMMA_RAD_PER_FS_T = 1.76085963023e-4  # electron gyromagnetic ratio, rad/(fs·T)
K_B_EV_PER_K = _ase.kB  # Boltzmann constant, eV/K
HBAR_EV_FS = _ase._hbar / _ase._e * 1e15  # ħ, eV·fs
HBAR_EV_PS = 6.5821191e-4  # ħ, eV·ps, the rounded value DeePMD-kit's pair_style deepspin uses (LAMMPS metal units)
