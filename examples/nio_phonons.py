"""NiO phonons in the G-state and the R-state with the shipped DeepSPIN model (the paper's Fig. 3(a,b)).

G-state: the type-II antiferromagnetic ground state, spins ±â (â ∥ [11-2]) alternating between (111)
planes. R-state: the second sublattice's spins turned by 90° within the (111) plane, to n̂ × â
(n̂ ∥ [111]), so neighbouring (111) planes carry mutually orthogonal spins. Both live in the 4-atom
magnetic cell of ``ase_deepspin.build.nio_afm``.

Structure. The cell is kept at the volume of the model's DFT training data (a = 4.1857 Å): all its
frames share one cell, so the model's stress is untrained (the pressure printed below is an
extrapolation). The positions are relaxed at fixed spins with ASE's BFGS in each state. A model
symmetrised under time reversal (the shipped one) keeps every Ni and O of the ideal G-state an
inversion centre, so its forces there vanish to round-off; models without it (pseudo-atoms at
R_i + η S_i break inversion) leave small forces (printed below), and the R-state's lower symmetry
gives it forces either way. A third
spectrum, R spins on the relaxed G positions (residual forces subtracted), separates the change at
fixed geometry from the relaxation.

Phonons: finite displacements (0.01 Å) with phonopy at fixed spins, in a 128-atom supercell (the
4×4×4 fcc superlattice of the chemical cell, 11.8 Å between periodic images) or the 64-atom cube.
Frequencies at q are the 12 branches of the 4-atom magnetic cell: those of the chemical cell at q and
at q + (π/a)[111] (the ordering vector), folded. "Optical" below means the upper six of them.

    python examples/nio_phonons.py [--supercell 128] [--out nio_phonons.png] [--model nio]
"""

import argparse
import time

import numpy as np
from ase.optimize import BFGS

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.analysis.phonons import (
    THZ_TO_MEV,
    band_path,
    compute_phonons,
    plot_phonons,
)
from ase_deepspin.build import nio_afm

parser = argparse.ArgumentParser()
parser.add_argument("--supercell", type=int, choices=(64, 128), default=128)
parser.add_argument("--out", default="nio_phonons.png")
parser.add_argument("--model", default="nio", help="model file or shipped model name (default: nio)")
args = parser.parse_args()

A = 4.1857  # Å, cubic lattice constant of the training data's cell volume
MAGNETIC_CELL = np.array([[1, -1, 0], [0, 1, -1], [1, 1, 2]])  # nio_afm's cell rows in units of a/2
# supercell rows in units of a/2: the 2a cube, or the fcc superlattice 2a[011], 2a[101], 2a[110]
TARGET = {64: 4 * np.eye(3), 128: 4 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])}[args.supercell]
supercell_matrix = np.rint(TARGET @ np.linalg.inv(MAGNETIC_CELL)).astype(int).T  # phonopy's column convention

calc = DeepSpinCalculator(args.model)
g_state = nio_afm(a=A)
spins = g_state.get_initial_magnetic_moments()
normal = np.ones(3) / np.sqrt(3)
r_spins = spins.copy()
r_spins[2] = np.cross(normal, spins[0])  # atom 2 is the Ni of the second sublattice
r_state = g_state.copy()
r_state.set_initial_magnetic_moments(r_spins)

ideal = g_state.positions.copy()
for name, atoms in (("G", g_state), ("R", r_state)):
    atoms.calc = calc
    before = np.abs(atoms.get_forces()).max()
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=500)
    print(f"{name}-state: max force {1e3 * before:.2f} → {1e3 * np.abs(atoms.get_forces()).max():.4f} meV/Å, "
          f"largest shift {np.abs(atoms.positions - ideal).max():.1e} Å, "
          f"pressure {-atoms.get_stress()[:3].mean() * 160.21766:.2f} GPa, "
          f"E = {atoms.get_potential_energy() / 2:.4f} eV/NiO")
r_on_g = g_state.copy()
r_on_g.set_initial_magnetic_moments(r_spins)

spectra = {}
for label, atoms in (("G-state", g_state), ("R-state", r_state), ("R spins, G positions", r_on_g)):
    start = time.perf_counter()
    spectra[label] = compute_phonons(atoms, supercell_matrix, calc, distance=0.01)
    print(f"{label}: {len(spectra[label].displacements)} displaced {args.supercell}-atom supercells, "
          f"{time.perf_counter() - start:.0f} s")

# special points in units of 2π/a; L is taken off the ordering vector (π/a)[111], which folds onto Γ
cartesian = {"Γ": (0, 0, 0), "X": (0, 1, 0), "W": (0.5, 1, 0), "K": (0.75, 0.75, 0), "L": (0.5, 0.5, -0.5)}
points = {k: g_state.cell.array @ np.array(v, dtype=float) / A for k, v in cartesian.items()}
path = band_path(g_state, points, [["Γ", "X", "W", "K", "Γ", "L", "W"]], npoints=61)
plot_phonons({k: spectra[k] for k in ("G-state", "R-state")}, args.out, path=path, unit="meV", mesh=(12, 12, 12),
             title=f"NiO, DeepSPIN, {args.supercell}-atom supercell")

print("\nOptical branches (upper 6 of the magnetic cell's 12), meV; Δ = R − G")
print(f"{'q':>2} {'G':>8} {'R':>8} {'Δ':>7} {'R@G pos':>8} {'Δ':>7}")
largest = 0.0
for label in ("Γ", "X", "L"):
    f = {k: np.sort(p.run_qpoints([points[label]]).frequencies[0]) * THZ_TO_MEV for k, p in spectra.items()}
    g, r, rg = f["G-state"], f["R-state"], f["R spins, G positions"]
    for k in range(6, 12):
        print(f"{label:>2} {g[k]:8.2f} {r[k]:8.2f} {r[k] - g[k]:+7.2f} {rg[k]:8.2f} {rg[k] - g[k]:+7.2f}")
    print(f"   {label}: optical |Δ| mean {np.abs(r - g)[6:].mean():.2f}, max {np.abs(r - g)[6:].max():.2f} meV "
          f"(G positions: {np.abs(rg - g)[6:].mean():.2f}, {np.abs(rg - g)[6:].max():.2f}); "
          f"lower six branches max |Δ| {np.abs(r - g)[:6].max():.2f} meV")
    largest = max(largest, float(np.abs(r - g)[6:].max()))
print(f"plot: {args.out}")
verdict = "as the paper's" if largest > 1.5 else "well below the paper's"
print(f"The paper (Fig. 3(a,b)) finds optical shifts close to 3 meV; this model's largest is {largest:.2f} meV, {verdict}. "
      "Its data hold O atoms never displaced and Ni within 0.015 Å, so the O-dominated optical branches and their "
      "spin-order dependence are extrapolation (see the model card).")
