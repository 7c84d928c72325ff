"""Quickstart: antiferromagnetic NiO with the shipped DeepSPIN model.

Builds type-II antiferromagnetic NiO (64 atoms) with ase.build, cants one spin, attaches the
calculator and prints energy, the largest force and the largest magnetic torque.

    python examples/quickstart.py
"""

import numpy as np

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.build import nio_afm

atoms = nio_afm(cubic=True)  # spins (N, 3) in μB as initial magnetic moments, zero on O
atoms.rattle(0.02, seed=0)
spins = atoms.get_initial_magnetic_moments()
spins[0] = 1.27 * np.array([np.sin(0.2), 0.0, np.cos(0.2)])  # cant one Ni spin
atoms.set_initial_magnetic_moments(spins)

atoms.calc = DeepSpinCalculator("nio")
energy = atoms.get_potential_energy()
forces = atoms.get_forces()
torques = atoms.calc.get_magnetic_torques(atoms)  # always pass the atoms: torques of their current state

print(f"NiO, {len(atoms)} atoms ({atoms.get_chemical_formula()})")
print(f"energy        {energy:.6f} eV  ({energy / len(atoms):.6f} eV/atom)")
print(f"max |force|   {np.linalg.norm(forces, axis=1).max():.6f} eV/Å")
print(f"max |torque|  {np.linalg.norm(torques, axis=1).max():.6f} eV/μB")
