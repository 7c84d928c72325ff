"""NiO magnons from the shipped DeepSPIN model: J1, J2, the spin-wave dispersion, and experiment.

    python examples/nio_magnons.py [--out runs/nio_magnons] [--supercells 4,4,3 6,6,4]

Steps: type-II antiferromagnetic NiO (rhombohedral magnetic cell, 2 Ni) is relaxed in its spin
directions with the model; exchange and single-ion tensors come from finite differences of the
model's torques in supercells (``orientations="ground-state"``: the model was trained on small
cantings of this order only, so its Hessian there is what it knows); linear spin-wave theory gives
the dispersion along the fcc path of seekpath.

Conventions. Here E = −Σ_pairs J ŝ_i·ŝ_j with unit vectors (J > 0 ferromagnetic, meV per pair).
Hutchings and Samuelsen (Phys. Rev. B 6, 3447 (1972)) write H = Σ_pairs J_HS S_i·S_j with S = 1
(J_HS > 0 antiferromagnetic) and find J2 = 19.01 meV, J1 = −1.37 meV and a band top near 117 meV.
With classical spins of length S, J = −J_HS S², so their values are J2 = −19.01 and J1 = +1.37 meV
here. Magnon energies scale as 1/S: the bands below use S = 1 (Ni²⁺), as the experiment's fit does;
the model's own moments (1.27 μB, S = |S|/g ≈ 0.63, what LLG with these moments precesses at) give
energies 1/0.63 ≈ 1.6 times higher.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.build import bulk

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.analysis.exchange import compute_exchange
from ase_deepspin.analysis.magnons import (LinearSpinWaves, band_path, magnon_dos, monkhorst_pack_cart,
                                           plot_magnon_bands)
from ase_deepspin.build import nio_afm
from ase_deepspin.dynamics.minimize import relax_spins
from ase_deepspin.hamiltonian import ShellExchange, SpinHamiltonian

A_NIO = 4.17  # Å
EXPERIMENT = {"J1_meV": 1.37, "J2_meV": -19.01, "band_top_meV": 117.0}  # this package's convention, S = 1


def shell_summary(model, atoms) -> dict:
    """Mean isotropic J (meV) of the first two shells; J1 split by parallel / antiparallel spins."""
    d, J = model.distances, 1e3 * model.isotropic
    parallel = np.einsum("pa,pa->p", model.moments[model.i], model.moments[model.j]) > 0
    first, second = np.abs(d - A_NIO / np.sqrt(2)) < 1e-2, np.abs(d - A_NIO) < 1e-2
    return {"J1_meV": J[first].mean(), "J1_parallel_meV": J[first & parallel].mean(),
            "J1_antiparallel_meV": J[first & ~parallel].mean(), "J1_spread_meV": np.ptp(J[first]),
            "J2_meV": J[second].mean(), "J2_spread_meV": np.ptp(J[second])}


def experiment_model(atoms):
    """The Hutchings–Samuelsen J1–J2 model on the same magnetic cell (through SpinHamiltonian)."""
    reference = atoms.copy()
    reference.calc = SpinHamiltonian(exchange={("Ni", "Ni"): ShellExchange(
        J=(1e-3 * EXPERIMENT["J1_meV"], 1e-3 * EXPERIMENT["J2_meV"]), radii=(A_NIO / np.sqrt(2), A_NIO))})
    return compute_exchange(reference, (4, 4, 3))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/nio_magnons")
    parser.add_argument("--supercells", nargs="+", default=["4,4,3", "6,6,4"])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    atoms = nio_afm(a=A_NIO)
    atoms.calc = DeepSpinCalculator("nio")
    converged = relax_spins(atoms, tmax=1e-6, steps=1000)
    print(f"spin relaxation of AFM-II converged: {converged}")

    results = {"supercells": {}}
    for text in args.supercells:
        supercell = tuple(int(v) for v in text.split(","))
        model = compute_exchange(atoms, supercell, orientations="ground-state")
        summary = shell_summary(model, atoms)
        results["supercells"][text] = summary
        print(f"supercell {supercell} ({len(atoms) * np.prod(supercell)} atoms): "
              + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
    print("\nexchange of the largest supercell (this package's convention, meV):")
    print(model.table(max_distance=4.2))

    path = band_path(bulk("NiO", "rocksalt", a=A_NIO))
    q, x, ticks = path["q_cart"], path["distance"], path["ticks"]
    spectra = {
        "model, full tensors": LinearSpinWaves(model, spin_lengths=1.0),
        "model, shell-averaged J (Heisenberg)": LinearSpinWaves(model.shell_averaged(), spin_lengths=1.0),
        "experiment J1, J2 (Hutchings & Samuelsen)": LinearSpinWaves(experiment_model(atoms), spin_lengths=1.0),
    }
    mesh = monkhorst_pack_cart(atoms.cell.array, (12, 12, 12))
    bands = {}
    for label, lswt in spectra.items():
        bands[label] = lswt.energies(q)
        on_mesh = lswt.energies(mesh)
        results[label] = {"gap_meV": float(on_mesh.min()), "band_top_meV": float(max(on_mesh.max(), bands[label].max()))}
        print(f"{label}: magnon gap {on_mesh.min():.2f} meV, band top {results[label]['band_top_meV']:.1f} meV (S = 1)")
    heisenberg = "model, shell-averaged J (Heisenberg)"
    dos = magnon_dos(spectra[heisenberg], mesh=(16, 16, 16), sigma_meV=1.5)
    png = plot_magnon_bands(x, bands[heisenberg], out / "nio_magnons.png", ticks=ticks, dos=dos,
                            reference={k: v for k, v in bands.items() if k != heisenberg},
                            title="NiO magnons, shipped DeepSPIN model (S = 1)")
    results["experiment"] = EXPERIMENT
    (out / "nio_magnons.json").write_text(json.dumps(results, indent=1, default=float))
    print(f"\nband plot {png}, numbers {out / 'nio_magnons.json'}")


if __name__ == "__main__":
    main()
