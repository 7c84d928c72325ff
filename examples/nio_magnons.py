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
from ase_deepspin.analysis.magnons import (
    LinearSpinWaves,
    SpinRecorder,
    band_path,
    dynamical_structure_factor,
    magnon_dos,
    monkhorst_pack_cart,
    plot_magnon_bands,
    plot_structure_factor,
)
from ase_deepspin.build import nio_afm
from ase_deepspin.dynamics.llg import sib_step
from ase_deepspin.dynamics.minimize import relax_spins
from ase_deepspin.calculators.hamiltonian import Anisotropy, ShellExchange, SpinHamiltonian
from ase_deepspin.spins import unit_vectors

A_NIO = 4.17  # Å
EXPERIMENT = {"J1_meV": 1.37, "J2_meV": -19.01, "band_top_meV": 117.0}  # this package's convention, S = 1


def shell_summary(model) -> dict:
    """Mean isotropic J (meV) of the first two shells; J1 split by parallel / antiparallel spins."""
    d, J = model.distances, 1e3 * model.isotropic
    parallel = np.einsum("pa,pa->p", model.moments[model.i], model.moments[model.j]) > 0
    first, second = np.abs(d - A_NIO / np.sqrt(2)) < 1e-2, np.abs(d - A_NIO) < 1e-2
    return {"J1_meV": J[first].mean(), "J1_parallel_meV": J[first & parallel].mean(),
            "J1_antiparallel_meV": J[first & ~parallel].mean(), "J1_spread_meV": np.ptp(J[first]),
            "J2_meV": J[second].mean(), "J2_spread_meV": np.ptp(J[second])}


def j1_j2_model(atoms, J1_meV: float, J2_meV: float, K_meV: float = 0.0):
    """A J1–J2 Heisenberg model (this package's convention) on the same magnetic cell, through SpinHamiltonian."""
    reference = atoms.copy()
    reference.calc = j1_j2_hamiltonian(J1_meV, J2_meV, K_meV)
    return compute_exchange(reference, (4, 4, 3))


def j1_j2_hamiltonian(J1_meV: float, J2_meV: float, K_meV: float = 0.0) -> SpinHamiltonian:
    """J1, J2 between Ni and an easy axis K along the spins of ``nio_afm()`` (meV)."""
    return SpinHamiltonian(exchange={("Ni", "Ni"): ShellExchange(J=(1e-3 * J1_meV, 1e-3 * J2_meV),
                                                                 radii=(A_NIO / np.sqrt(2), A_NIO))},
                           anisotropy={"Ni": Anisotropy(K=1e-3 * K_meV, axis=(1.0, 1.0, -2.0))})


def structure_factor_from_llg(J1_meV: float, J2_meV: float, K_meV: float, out: Path, steps: int = 4096,
                              dt_fs: float = 1.0) -> Path:
    """S(q, ω) along L–Γ–X from undamped LLG of the J1–J2–K model near its ground state, with its LSWT bands
    (spin lengths of the 1.27 μB moments, as LLG precesses them) drawn on top.

    Without the easy axis K the classical J1–J2 AFM-II is degenerate (the four simple-cubic
    sublattices turn freely against each other, as the zero modes of LSWT show) and LLG drifts far
    from the collinear state within a picosecond."""
    lswt = LinearSpinWaves(j1_j2_model(nio_afm(a=A_NIO), J1_meV, J2_meV, K_meV))
    atoms = nio_afm(a=A_NIO, cubic=True, repeat=(3, 3, 3))  # 25 Å cube: q on a (2π/a)/6 grid
    atoms.calc = calc = j1_j2_hamiltonian(J1_meV, J2_meV, K_meV)
    recorder = SpinRecorder(atoms)
    unit, _ = unit_vectors(atoms.get_initial_magnetic_moments()[recorder.magnetic])
    rng = np.random.default_rng(0)
    unit = unit + 0.03 * rng.normal(size=unit.shape)  # a low-temperature state: ~2° tilts
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    full_field = calc.frozen_lattice_field(atoms)
    magnetic = recorder.magnetic

    def field(u):
        spins = np.zeros((len(atoms), 3))
        spins[magnetic] = u
        return full_field(spins)[magnetic]

    frames = np.empty((steps, len(unit), 3))
    for t in range(steps):
        frames[t] = unit
        unit = sib_step(unit, field, dt_fs)
    b = 2 * np.pi / A_NIO
    h = np.arange(7) / 6
    q = np.concatenate([b * np.array([[0.5, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [1 / 6, 1 / 6, 1 / 6]]),
                        b * h[:, None] * [1, 0, 0]])
    distance = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))])
    energies, intensity = dynamical_structure_factor(frames, recorder.positions, dt_fs, q)
    keep = energies <= 1.3 * lswt.energies(q).max()
    return plot_structure_factor(distance, energies[keep], intensity[:, keep], out / "nio_sqw.png",
                                 ticks=[(distance[0], "L"), (distance[3], "Γ"), (distance[-1], "X")],
                                 bands_meV=lswt.energies(q),
                                 title=f"NiO J1–J2 (model) + K = {K_meV} meV: S(q, ω) from LLG;\n"
                                       "dashed: LSWT for the LLG's |S| = 1.27 μB (the band plot uses S = 1)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/nio_magnons")
    parser.add_argument("--supercells", nargs="+", default=["4,4,3", "6,6,4"])
    parser.add_argument("--model", default="nio", help="model file or shipped model name (default: nio)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    atoms = nio_afm(a=A_NIO)
    atoms.calc = DeepSpinCalculator(args.model)
    relaxation = relax_spins(atoms, tmax=1e-6, steps=1000)
    print(f"spin relaxation from AFM-II: converged {relaxation.converged}, at a minimum {relaxation.minimum} (lowest "
          f"spin-Hessian eigenvalue {relaxation.lowest_eV_per_rad2:.3g} eV/rad², {relaxation.escapes} saddles left)")

    results = {"supercells": {}}
    for text in args.supercells:
        supercell = tuple(int(v) for v in text.split(","))
        model = compute_exchange(atoms, supercell, orientations="ground-state", method="autograd")
        summary = shell_summary(model)
        results["supercells"][text] = summary
        print(f"supercell {supercell} ({len(atoms) * np.prod(supercell)} atoms): "
              + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
    print("\nexchange of the largest supercell (this package's convention, meV):")
    print(model.table(max_distance=4.2))

    model_j1, model_j2 = results["supercells"][args.supercells[-1]]["J1_meV"], \
        results["supercells"][args.supercells[-1]]["J2_meV"]
    path = band_path(bulk("NiO", "rocksalt", a=A_NIO))
    q, x, ticks = path["q_cart"], path["distance"], path["ticks"]
    spectra = {
        "model, full tensors": LinearSpinWaves(model, spin_lengths=1.0),
        "model, all shells averaged (Heisenberg)": LinearSpinWaves(model.shell_averaged(), spin_lengths=1.0),
        "model J1, J2": LinearSpinWaves(j1_j2_model(atoms, model_j1, model_j2), spin_lengths=1.0),
        "experiment J1, J2 (Hutchings & Samuelsen)": LinearSpinWaves(
            j1_j2_model(atoms, EXPERIMENT["J1_meV"], EXPERIMENT["J2_meV"]), spin_lengths=1.0),
    }
    mesh = monkhorst_pack_cart(atoms.cell.array, (12, 12, 12))
    bands = {}
    print("\nLSWT on a 12^3 mesh and the band path (a negative lowest energy is an imaginary mode: unstable)")
    for label, lswt in spectra.items():
        bands[label] = lswt.energies(q)
        on_mesh = np.concatenate([lswt.energies(mesh), bands[label]])
        results[label] = {"lowest_meV": float(on_mesh.min()), "band_top_meV": float(on_mesh.max())}
        verdict = "stable" if on_mesh.min() > -1e-3 else "UNSTABLE: imaginary modes, plotted below 0"
        print(f"{label}: lowest magnon {on_mesh.min():.2f} meV, band top {on_mesh.max():.1f} meV (S = 1): {verdict}")
    main_label = "model J1, J2"
    dos = magnon_dos(spectra[main_label], mesh=(16, 16, 16), sigma_meV=1.5)
    png = plot_magnon_bands(x, bands[main_label], out / "nio_magnons.png", ticks=ticks, dos=dos,
                            reference={k: bands[k] for k in ("model, full tensors",
                                                             "experiment J1, J2 (Hutchings & Samuelsen)")},
                            title="NiO magnons from the shipped DeepSPIN model (S = 1)", label=main_label)
    sqw = structure_factor_from_llg(model_j1, model_j2, 0.1, out)
    results["experiment"] = EXPERIMENT
    (out / "nio_magnons.json").write_text(json.dumps(results, indent=1, default=float))
    print(f"\nband plot {png}, S(q, ω) map {sqw}, numbers {out / 'nio_magnons.json'}")


if __name__ == "__main__":
    main()
