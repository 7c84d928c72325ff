"""Spin-lattice dynamics of antiferromagnetic NiO heated to 300 K with the shipped DeepSPIN model.

Spins (Gilbert damping 0.05) and lattice (Langevin friction 0.02 /fs) both couple to a 300 K bath.
Plots the sublattice (Néel) magnetisation and the total magnetisation per Ni against time.

    python examples/nio_llg_300K.py [--steps 400] [--out nio_llg_300K.png]
"""

import argparse

import matplotlib
import numpy as np

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.build import nio_afm
from ase_deepspin.dynamics import SpinLatticeDynamics

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=400)
parser.add_argument("--out", default="nio_llg_300K.png")
args = parser.parse_args()

atoms = nio_afm(repeat=(2, 2, 2))  # 32 atoms
atoms.calc = DeepSpinCalculator("nio")
nickel = atoms.numbers == 28
start = atoms.get_initial_magnetic_moments()[nickel]
sublattice = np.sign(start @ start[0])  # +1 / −1 for the two antiferromagnetic sublattices

md = SpinLatticeDynamics(atoms, dt_fs=0.5, alpha=0.05, temperature_K=300.0, lattice_friction_per_fs=0.02,
                         rng=np.random.default_rng(0))
times, neel, total = [], [], []


def record():
    spins = atoms.get_initial_magnetic_moments()[nickel]
    times.append(md.time_fs)
    neel.append(np.linalg.norm((sublattice[:, None] * spins).mean(axis=0)))
    total.append(np.linalg.norm(spins.mean(axis=0)))


md.attach(record, interval=5)
md.run(args.steps)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
ax.plot(times, neel, label="Néel (sublattice) |L| per Ni")
ax.plot(times, total, label="total |M| per Ni")
ax.set_xlabel("time (fs)")
ax.set_ylabel("magnetisation (μB)")
ax.set_title("NiO, spins and lattice at 300 K")
ax.legend()
fig.savefig(args.out, dpi=120)
print(f"final |L| = {neel[-1]:.3f} μB, |M| = {total[-1]:.3f} μB per Ni; plot: {args.out}")
