"""180° polarization switching of R3c BiFeO3 along [111] by climbing-image NEB at fixed magnetization.

The workflow of Fig. 4c of Yang et al., PRB 110, 064427 (2024): +P and −P R3c BiFeO3 sharing the
G-type antiferromagnetic Fe order, a band between them (ASE NEB, climbing image, FIRE), the energy
along the path and the polarization of every image from Born charges, plotted as energy vs P.

    python examples/bifeo3_switching.py MODEL [--images 9] [--relax-spins] [--out runs/bifeo3]

MODEL is a DeepSPIN model file for Bi, Fe, O (none is public, so none ships), or ``analytic``: a
toy spin-lattice model (Bethe–Slater Fe–Fe exchange from ``SpinHamiltonian`` plus a double well
along the polar mode, barrier ``--toy-barrier`` eV per formula unit) that runs anywhere and
whose barrier is known. Its minimum-energy path is the straight line between the ends, so the band
starts bowed (``--bow``) and the NEB has to relax it. Any spin calculator works the same way (see ``make_calculator``).

Endpoints: +P from ``bifeo3_r3c`` is relaxed at fixed spins (fixed cell) with the calculator,
then −P is its inversion twin through an Fe site (``inverted_variant``), so both ends are minima
with the same octahedral tilts and spins. ``--relax-spins`` relaxes the spins of every image at its
lattice configuration (spin-adiabatic path) instead of keeping them fixed.

Outputs in --out: neb.traj (all images every step, with spins), neb.log, profile.png (energy
along the path), energy_vs_P.png (Fig. 4c) and profile.json (energies, P, barrier).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.mep import NEB
from ase.optimize import FIRE

from ase_deepspin.analysis.neb import NEBResults, SpinRelaxedCalculator, make_images
from ase_deepspin.build import (
    NOMINAL_CHARGES,
    bifeo3_switching_endpoints,
    inverted_variant,
    polarization,
)
from ase_deepspin.calculators.hamiltonian import BetheSlater, SpinHamiltonian


class PolarDoubleWell(Calculator):
    """Toy lattice energy with minima at two structures: E = E_b [(q/q0)² − 1]² + ½ κ |Δ⊥|² (eV).

    Δ = R − (R_+ + R_−)/2 over all atoms (Å), q = Δ·û along the unit polar mode û ∝ R_+ − R_−,
    q0 = |R_+ − R_−|/2 and Δ⊥ = Δ − q û. Both ends are minima (E = 0) and the straight path
    between them crosses the barrier E_b at the centrosymmetric midpoint. E depends on the cell only
    through the positions, so under a homogeneous strain dE/dε = −Σ_i F_i ⊗ R_i: the stress.
    """

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, plus, minus, barrier_eV: float, kappa: float = 5.0):
        super().__init__()
        self.reference = 0.5 * (plus.positions + minus.positions)
        mode = 0.5 * (plus.positions - minus.positions)
        self.q0 = np.linalg.norm(mode)
        self.mode = mode / self.q0
        self.barrier_eV, self.kappa = barrier_eV, kappa

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        delta = self.atoms.positions - self.reference
        q = np.vdot(delta, self.mode)
        perp = delta - q * self.mode
        x = q / self.q0
        forces = -(4 * self.barrier_eV * x * (x**2 - 1) / self.q0 * self.mode + self.kappa * perp)
        virial = -forces.T @ self.atoms.positions
        stress = 0.5 * (virial + virial.T) / self.atoms.get_volume()
        self.results = {"energy": self.barrier_eV * (x**2 - 1) ** 2 + 0.5 * self.kappa * np.vdot(perp, perp),
                        "forces": forces, "stress": stress.flat[[0, 4, 8, 5, 2, 1]]}


def make_calculator(model: str, plus, minus, toy_barrier_eV: float):
    """A function returning a new spin calculator (one per NEB image)."""
    if model == "analytic":
        n_fu = int(np.sum(plus.numbers == 26))
        exchange = {("Fe", "Fe"): BetheSlater(alpha=0.05, gamma=0.5, delta=2.0, cutoff=4.5)}  # J(3.96 Å) < 0: AFM
        return lambda: SpinHamiltonian(exchange=exchange, lattice=PolarDoubleWell(plus, minus, toy_barrier_eV * n_fu))
    from ase_deepspin import DeepSpinCalculator, load_model

    network = load_model(model)  # one network shared by the images' calculators
    return lambda: DeepSpinCalculator(network)


def dipole_free_bow(plus, minus, born: dict, seed: int = 0) -> np.ndarray:
    """A random displacement pattern (N, 3), unit largest row (Å), that moves no charge (zero Born dipole), no
    centre of mass, and is orthogonal to the polar mode R_+ − R_−: bowing a band with it changes neither
    its polarization nor its projection on the mode, only how far it is from the straight path."""
    rng = np.random.default_rng(seed)
    n = len(plus)
    charges = np.array([float(np.mean(np.diagonal(np.atleast_2d(born[s])))) if np.ndim(born[s]) else float(born[s])
                        for s in plus.get_chemical_symbols()])
    rows = [(plus.positions - minus.positions).ravel()]
    for axis in range(3):
        unit = np.zeros((n, 3))
        unit[:, axis] = 1.0
        rows += [unit.ravel(), (unit * charges[:, None]).ravel()]
    constraints = np.array(rows)
    w = rng.normal(size=3 * n)
    w -= constraints.T @ np.linalg.solve(constraints @ constraints.T, constraints @ w)
    w = w.reshape(n, 3)
    return w / np.linalg.norm(w, axis=1).max()


def parse_born(text: str | None) -> dict:
    if not text:
        return NOMINAL_CHARGES
    charges = dict(item.split("=") for item in text.split(","))
    return {element.strip(): float(value) for element, value in charges.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="DeepSPIN model file, or 'analytic' for the toy model")
    parser.add_argument("--images", type=int, default=9, help="images including the ends")
    parser.add_argument("--fmax", type=float, default=0.01, help="NEB convergence, eV/Å")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--hexagonal", action="store_true", help="30-atom hexagonal cell (default: 10-atom)")
    parser.add_argument("--relax-spins", action="store_true", help="relax spins of each image (spin-adiabatic)")
    parser.add_argument("--born", help="Born charges per element, e.g. 'Bi=4.4,Fe=3.5,O=-2.6333' (default nominal)")
    parser.add_argument("--toy-barrier", type=float, default=0.4, help="analytic model's barrier, eV/f.u.")
    parser.add_argument("--bow", type=float, default=None,
                        help="Å; bow the starting band by a dipole-free pattern this large at its middle "
                             "(default 0.1 for the analytic model, whose path is the straight line, else 0)")
    parser.add_argument("--out", default="runs/bifeo3", help="output directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    born = parse_born(args.born)

    plus, minus = bifeo3_switching_endpoints(hexagonal=args.hexagonal)
    new_calculator = make_calculator(args.model, plus, minus, args.toy_barrier)
    plus.calc = new_calculator()
    with FIRE(plus, logfile=str(out / "endpoint.log")) as opt:  # positions only: spins stay G-type
        opt.run(fmax=0.1 * args.fmax, steps=args.steps)
    plus.calc = None
    minus = inverted_variant(plus, plus.positions[np.flatnonzero(plus.numbers == 26)[0]])

    calculator = new_calculator
    if args.relax_spins:
        calculator = lambda: SpinRelaxedCalculator(new_calculator())
    images = make_images(plus, minus, args.images, calculator=calculator)
    bow = args.bow if args.bow is not None else (0.1 if args.model == "analytic" else 0.0)
    if bow:
        # the analytic model's minimum-energy path is the straight line the band starts on: bowed, it
        # must relax (polarization and mode projection of every image are unchanged by the pattern)
        pattern = dipole_free_bow(plus, minus, born)
        for k, image in enumerate(images[1:-1], start=1):
            image.positions += bow * np.sin(np.pi * k / (len(images) - 1)) * pattern
    neb = NEB(images, k=0.2, climb=True, method="improvedtangent")
    with FIRE(neb, logfile=str(out / "neb.log"), trajectory=str(out / "neb.traj")) as opt:
        converged = opt.run(fmax=args.fmax, steps=args.steps)
        neb_steps = opt.nsteps

    results = NEBResults.from_images(images)
    reference = plus.copy()
    reference.positions = 0.5 * (plus.positions + minus.positions)  # centrosymmetric R-3c midpoint
    p_axis = np.array([polarization(image, reference, born)[2] for image in images])  # along c = [111]_pc
    n_fu = int(np.sum(plus.numbers == 26))
    per_fu_meV = 1e3 / n_fu
    results.plot(out / "profile.png", ylabel=f"energy (eV per cell of {n_fu} f.u.)")
    results.plot(out / "energy_vs_P.png", x=p_axis, xlabel="P along [111] (μC/cm²)", energy_scale=per_fu_meV,
                 ylabel="energy (meV/f.u.)")
    summary = {"converged": bool(converged), "neb_steps": int(neb_steps), "bow_A": bow, "model": args.model,
               "formula_units": n_fu,
               "barrier_eV_per_fu": results.barrier / n_fu, "fit_barrier_eV_per_fu": results.fit_barrier / n_fu,
               "saddle_image": results.saddle_index, "P_uC_per_cm2": p_axis.tolist(),
               "energy_meV_per_fu": (per_fu_meV * (results.energies - results.energies[0])).tolist(),
               "reaction_coordinate_A": results.reaction_coordinate.tolist()}
    (out / "profile.json").write_text(json.dumps(summary, indent=1))
    print(f"{'image':>5s} {'P (μC/cm²)':>11s} {'E (meV/f.u.)':>13s}")
    for i, (p, e) in enumerate(zip(p_axis, summary["energy_meV_per_fu"])):
        print(f"{i:5d} {p:11.2f} {e:13.2f}")
    print(f"barrier {1e3 * summary['barrier_eV_per_fu']:.2f} meV/f.u. (spline {1e3 * summary['fit_barrier_eV_per_fu']:.2f}), "
          f"NEB {'converged' if converged else 'NOT converged'}; outputs in {out}")
    return summary


if __name__ == "__main__":
    main()
