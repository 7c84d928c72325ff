"""Spin-lattice dynamics of antiferromagnetic NiO at 300 K with the shipped DeepSPIN model (compressed).

The lattice starts with 300 K velocities and, with the spins (Gilbert damping 0.05), couples to a 300 K
bath (Langevin friction 0.02 /fs). Type-II NiO is four interpenetrating simple-cubic Ni sublattices,
each antiferromagnetic by itself and almost uncoupled from the others (their exchange cancels by
symmetry), so each sublattice's staggered order parameter |L_k| is the quantity that tells whether
the order survives; the staggered magnetisation over all Ni mixes four nearly independent vectors and
falls even where every sublattice stays ordered. Both are plotted, with the total |M| per Ni.

    python examples/nio_llg_300K.py [--steps 400] [--repeat 2] [--out nio_llg_300K.png]
"""

import argparse

import numpy as np
from ase.md.velocitydistribution import thermalize_momenta

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.figures import new_figure
from ase_deepspin.build import nio_afm
from ase_deepspin.dynamics import SpinLatticeDynamics

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=400)
parser.add_argument("--repeat", type=int, default=2, help="cubes of 64 atoms along each axis")
parser.add_argument("--out", default="nio_llg_300K.png")
args = parser.parse_args()

A = 4.17  # Å, the lattice constant nio_afm builds
atoms = nio_afm(a=A, cubic=True).repeat(args.repeat)
atoms.calc = DeepSpinCalculator("nio", compress=True)
nickel = np.flatnonzero(atoms.numbers == 28)
start = atoms.get_initial_magnetic_moments()[nickel]
# simple-cubic sublattice of each Ni: the parities of its position in units of a/2 (fcc: i + j + k even)
steps = np.rint(atoms.positions[nickel] / (A / 2)).astype(int) % 2
sublattice = steps[:, 0] * 2 + steps[:, 1]
sign = np.empty(len(nickel))  # ±1: the staggering within each sublattice, from the starting order
for k in range(4):
    members = sublattice == k
    sign[members] = np.sign(start[members] @ start[members][0])
sign_all = np.sign(start @ start[0])

thermalize_momenta(atoms, temperature_K=300.0, rng=np.random.default_rng(1))
md = SpinLatticeDynamics(atoms, dt_fs=0.5, alpha=0.05, temperature_K=300.0, lattice_friction_per_fs=0.02,
                         rng=np.random.default_rng(0))
times, per_sublattice, staggered, total, temperature = [], [], [], [], []


def record():
    spins = atoms.get_initial_magnetic_moments()[nickel]
    times.append(md.time_fs)
    per_sublattice.append([np.linalg.norm((sign[:, None] * spins)[sublattice == k].mean(axis=0)) for k in range(4)])
    staggered.append(np.linalg.norm((sign_all[:, None] * spins).mean(axis=0)))
    total.append(np.linalg.norm(spins.mean(axis=0)))
    temperature.append(atoms.get_temperature())


md.attach(record, interval=5)
md.run(args.steps, progress=True)

fig = new_figure(figsize=(6.5, 4))
ax = fig.subplots()
per_sublattice = np.array(per_sublattice)
for k in range(4):
    ax.plot(times, per_sublattice[:, k], lw=1, label=f"|L_{k + 1}|, simple-cubic sublattice {k + 1}", color=f"C{k}")
ax.plot(times, staggered, color="k", ls="--", label="|L| over all Ni (mixes the four)")
ax.plot(times, total, color="0.5", label="|M| per Ni")
ax.set(xlabel="time (fs)", ylabel="order parameter per Ni (μB)", ylim=(0, 1.4))
ax.set_title(f"NiO, {len(atoms)} atoms: spins and lattice in a 300 K bath\n(lattice velocities drawn at 300 K)",
             fontsize=10)
ax.legend(fontsize=7, loc="lower left", ncol=2)
fig.savefig(args.out, dpi=120)
print(f"after {md.time_fs:.0f} fs: sublattice |L| {', '.join(f'{v:.3f}' for v in per_sublattice[-1])} μB; "
      f"|L| over all Ni {staggered[-1]:.3f}, |M| {total[-1]:.3f} μB per Ni; lattice {temperature[-1]:.0f} K; "
      f"plot: {args.out}")
