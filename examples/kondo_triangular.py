"""An itinerant magnet learned from its electrons: the s–d exchange model on the triangular lattice.

The oracle is `SdExchangeCalculator` (electrons hopping with t = 1 eV between nearest neighbours of a
triangular lattice, a = 2.5 Å, coupled to unit classical spins by J = 2 eV/μB, a quarter of the 2N
one-electron states filled, k_B T_e = 0.01 eV), where the four-sublattice tetrahedral order is the lowest of
the ferromagnetic, 120°, stripe and tetrahedral states. Its spin torques come from exact diagonalisation
(cost N³) and are long-ranged and many-body. Stages (each reads what the one before wrote into --workdir):

* ``data``: labelled frames of 12 × 12 lattices (144 sites) on the frozen lattice, without forces: random
  spins, and snapshots of oracle-driven LLG (α = 0.1, 0.02 fs steps) at three bath temperatures from random
  and tetrahedral starts; DeePMD-kit npy systems in WORKDIR/data/<kind>.
* ``train``: ``ase-deepspin train`` with ``examples/kondo_train.yaml`` (the descriptor of spin invariants:
  energies and torques only).
* ``ground``: spins relaxed (``relax_spins``) from random starts with the model and with the oracle: the
  oracle's energy of each result, the mean angle between neighbours (109.5° in the tetrahedral order) and the
  scalar chirality of the triangles (±0.770 on every triangle there).
* ``test``: the model against the oracle on the held-out frames, per kind: RMSE against the label RMS and R²
  for energies per site, torques and their part across S (the oracle's torques are mostly along S, J times the
  local electron polarisation, which unit-length dynamics never sees).
* ``compare``: quenches of the 12 × 12 lattice from random spins (T = 0, α = 0.2), LLG driven by the oracle
  and by the model from the same starts: energy per site (by the oracle, along both) and mean |χ| over time.
* ``coarsen``: a quench of a ``--size`` × ``--size`` lattice (default 100: 10⁴ sites) driven by the
  compressed model: energy, mean |χ| and the chirality domain size L(t) (:func:`domain_size`) at log-spaced
  times, the growth exponent fitted after the local order has formed, against Allen–Cahn's 1/2; the
  model's cost per step, beside the oracle's at the same size extrapolated from N³ (measured at 144–576 sites).

    python examples/kondo_triangular.py data [--workdir runs/kondo] [--frames 160]
    python examples/kondo_triangular.py train
    python examples/kondo_triangular.py test [--model runs/kondo/model.pt]
    python examples/kondo_triangular.py ground [--starts 3]
    python examples/kondo_triangular.py compare [--starts 3] [--steps 1500]
    python examples/kondo_triangular.py coarsen [--size 100] [--steps 600] [--minutes 40]
"""

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ase_deepspin.build import tetrahedral_spins, triangular_lattice
from ase_deepspin.calculators import SdExchangeCalculator
from ase_deepspin.dynamics import SpinLatticeDynamics
from ase_deepspin.io.frames import frame_system, read_frames, write_deepmd_npy
from ase_deepspin.training.active import label

SIZE, SPACING = (12, 12), 2.5
ORACLE = dict(hopping_eV=1.0, coupling_eV_per_muB=2.0, cutoff=3.0, cutoff_width=0.3, filling=0.25, smearing_eV=0.01)
TEMPERATURES_K = (100.0, 400.0, 1600.0)
HERE = Path(__file__).resolve().parent


def oracle() -> SdExchangeCalculator:
    return SdExchangeCalculator(**ORACLE)


def random_spins(rng, n: int) -> np.ndarray:
    spins = rng.normal(size=(n, 3))
    return spins / np.linalg.norm(spins, axis=1, keepdims=True)


def labelled(atoms, calc, source: str):
    """The oracle's energy and torques of ``atoms`` as a frame without forces (a frozen lattice)."""
    return dataclasses.replace(label(atoms, calc), forces=None, source=source)


def make_data(workdir: Path, n_frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lattice = triangular_lattice(SIZE, SPACING)
    calc = oracle()
    kinds = {"random": []}
    for k in range(n_frames):
        lattice.set_initial_magnetic_moments(random_spins(rng, len(lattice)))
        kinds["random"].append(labelled(lattice, calc, f"random#{k}"))
    for temperature in TEMPERATURES_K:
        frames = kinds[f"llg_{temperature:.0f}K"] = []
        for start in ("random", "tetrahedral"):
            atoms = lattice.copy()
            atoms.set_initial_magnetic_moments(tetrahedral_spins(SIZE) if start == "tetrahedral"
                                               else random_spins(rng, len(atoms)))
            atoms.calc = calc
            md = SpinLatticeDynamics(atoms, dt_fs=0.02, alpha=0.1, temperature_K=temperature, lattice="frozen",
                                     rng=np.random.default_rng(int(rng.integers(1 << 30))))
            for k in range(n_frames // 2):
                md.run(25)
                frames.append(labelled(atoms, calc, f"llg {temperature:.0f} K from {start}#{k}"))
        print(f"{temperature:.0f} K: {len(frames)} frames", flush=True)
    for kind, frames in kinds.items():
        write_deepmd_npy(workdir / "data" / kind, frames, ["Fe"])
    print(f"frames in {workdir / 'data'}: " + ", ".join(f"{k} {len(v)}" for k, v in kinds.items()))


def test(workdir: Path, model: Path) -> None:
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.frames import hold_out
    from ase_deepspin.training.config import TrainConfig

    config = TrainConfig.from_yaml(HERE / "kondo_train.yaml")
    calc = DeepSpinCalculator(str(model))
    report = {}
    systems = sorted((workdir / "data").iterdir())
    held = hold_out([f for system in systems for f in read_frames(system)], config.held_out)[1]
    for system in systems:
        picked = [f for f in held if Path(frame_system(f)).name == system.name]
        e_ref, e_ml, w_ref, w_ml = [], [], [], []
        for f in picked:
            atoms = f.to_atoms()
            atoms.calc = calc
            e_ml.append(atoms.get_potential_energy() / len(atoms))
            e_ref.append(f.energy / len(atoms))
            w_ml.append(calc.get_magnetic_torques(atoms))
            w_ref.append(f.torques)
        e_ref, e_ml, w_ref, w_ml = map(np.array, (e_ref, e_ml, w_ref, w_ml))

        def scores(ref, got):
            rmse = float(np.sqrt(np.mean((got - ref) ** 2)))
            return {"rmse": rmse, "label_rms": float(np.sqrt(np.mean((ref - ref.mean()) ** 2))),
                    "r2": float(1 - np.sum((got - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))}

        spins = np.array([f.spins for f in picked])

        def across(w):  # the part of the torques that turns the (unit) spins: all that LLG sees
            return w - (w * spins).sum(-1, keepdims=True) * spins

        report[system.name] = {"frames": len(picked), "energy_eV_per_site": scores(e_ref, e_ml),
                               "torques_eV_per_muB": scores(w_ref, w_ml),
                               "torques_across_S_eV_per_muB": scores(across(w_ref), across(w_ml))}
        e, w, t = (report[system.name][k] for k in ("energy_eV_per_site", "torques_eV_per_muB",
                                                     "torques_across_S_eV_per_muB"))
        print(f"{system.name:12s} {len(picked):3d} frames  E RMSE {1e3 * e['rmse']:.2f} meV/site (spread "
              f"{1e3 * e['label_rms']:.2f}), R² {e['r2']:.4f};  ω RMSE {1e3 * w['rmse']:.1f} meV/μB (label RMS "
              f"{1e3 * w['label_rms']:.1f}), R² {w['r2']:.4f};  across S {1e3 * t['rmse']:.1f} "
              f"({1e3 * t['label_rms']:.1f}), R² {t['r2']:.4f}")
    (workdir / "test.json").write_text(json.dumps(report, indent=2))


def ground_state(workdir: Path, model: Path, starts: int, seed: int = 1) -> None:
    """Spins relaxed from random starts with the model (and the oracle, same starts): energy per site by the
    oracle, the mean angle between neighbouring spins, and the chirality of up and down triangles."""
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.analysis.chirality import scalar_chirality
    from ase_deepspin.dynamics import relax_spins

    rng = np.random.default_rng(seed)
    lattice = triangular_lattice(SIZE, SPACING)
    n1, n2 = SIZE
    neighbours = [(k, ((k // n2 + 1) % n1) * n2 + k % n2) for k in range(len(lattice))]
    rows = []
    for start in range(starts):
        spins = random_spins(rng, len(lattice))
        for name, calc in (("model", DeepSpinCalculator(str(model))), ("oracle", oracle())):
            atoms = lattice.copy()
            atoms.set_initial_magnetic_moments(spins)
            atoms.calc = calc
            result = relax_spins(atoms, tmax=1e-3, steps=3000)
            relaxed = atoms.get_initial_magnetic_moments()
            up, down = scalar_chirality(relaxed, SIZE)
            angle = np.degrees(np.mean([np.arccos(np.clip(relaxed[a] @ relaxed[b], -1, 1)) for a, b in neighbours]))
            check = lattice.copy()
            check.set_initial_magnetic_moments(relaxed)
            check.calc = oracle()
            rows.append({"start": start, "relaxed_with": name, "converged": bool(result.converged),
                         "minimum": result.minimum, "oracle_energy_eV_per_site": check.get_potential_energy() / len(check),
                         "neighbour_angle_deg": float(angle), "chirality_mean": float(np.mean([up, down])),
                         "chirality_abs_mean": float(np.mean(np.abs([up, down])))})
            print(json.dumps(rows[-1]), flush=True)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ground_state.json").write_text(json.dumps(rows, indent=2))


def quench_llg(atoms, calc, steps: int, every: int, dt_fs: float, alpha: float, observe) -> list[dict]:
    """LLG at T = 0 on the frozen lattice from the spins in ``atoms``; ``observe(atoms, t_fs)`` → a record
    dict, taken at the start and every ``every`` steps."""
    atoms.calc = calc
    md = SpinLatticeDynamics(atoms, dt_fs=dt_fs, alpha=alpha, lattice="frozen")
    records = [observe(atoms, 0.0)]
    for done in range(every, steps + 1, every):
        md.run(every)
        records.append(observe(atoms, done * dt_fs))
    return records


def compare(workdir: Path, model: Path, starts: int, steps: int, dt_fs: float = 0.2, alpha: float = 0.2,
            every: int = 25, seed: int = 2) -> None:
    """Quenches of the 12 × 12 lattice driven by the oracle and by the model from the same random starts."""
    from ase_deepspin import DeepSpinCalculator, compress_model
    from ase_deepspin.analysis.chirality import scalar_chirality
    from ase_deepspin.io import load_model

    rng = np.random.default_rng(seed)
    lattice = triangular_lattice(SIZE, SPACING)
    judge = oracle()
    learned = compress_model(load_model(model))

    def observe(atoms, t_fs):
        spins = atoms.get_initial_magnetic_moments()
        check = lattice.copy()
        check.set_initial_magnetic_moments(spins)
        check.calc = judge
        return {"t_fs": t_fs, "oracle_energy_eV_per_site": check.get_potential_energy() / len(check),
                "mean_abs_chirality": float(np.mean(np.abs(scalar_chirality(spins, SIZE))))}

    runs = {"oracle": [], "model": []}
    for start in range(starts):
        spins = random_spins(rng, len(lattice))
        for name, calc in (("oracle", oracle()), ("model", DeepSpinCalculator(learned))):
            atoms = lattice.copy()
            atoms.set_initial_magnetic_moments(spins)
            begin = time.perf_counter()
            runs[name].append(quench_llg(atoms, calc, steps, every, dt_fs, alpha, observe))
            print(f"start {start}: {name} {time.perf_counter() - begin:.0f} s, final energy "
                  f"{runs[name][-1][-1]['oracle_energy_eV_per_site']:.5f} eV/site, mean |χ| "
                  f"{runs[name][-1][-1]['mean_abs_chirality']:.3f}", flush=True)
    summary = {}
    for key in ("oracle_energy_eV_per_site", "mean_abs_chirality"):
        curves = {name: np.array([[r[key] for r in run] for run in runs[name]]) for name in runs}
        spread = np.sqrt(curves["oracle"].var(0, ddof=1) / starts + curves["model"].var(0, ddof=1) / starts)
        gap = np.abs(curves["oracle"].mean(0) - curves["model"].mean(0))
        summary[key] = {"oracle_final": float(curves["oracle"][:, -1].mean()),
                        "model_final": float(curves["model"][:, -1].mean()),
                        "largest_gap_over_its_standard_error": float(np.max(gap[1:] / spread[1:])),
                        "fraction_of_times_within_2_standard_errors": float(np.mean(gap[1:] <= 2 * spread[1:]))}
        print(f"{key}: oracle {summary[key]['oracle_final']:.4f}, model {summary[key]['model_final']:.4f} at "
              f"{steps * dt_fs:.0f} fs; the mean curves lie within 2 standard errors at "
              f"{100 * summary[key]['fraction_of_times_within_2_standard_errors']:.0f} % of the times")
    ordered = 0.9 * 4 / (3 * np.sqrt(3))
    summary["time_to_order_fs"] = {name: [next((r["t_fs"] for r in run if r["mean_abs_chirality"] > ordered), None)
                                          for run in runs[name]] for name in runs}
    print(f"time to mean |χ| > {ordered:.3f} (fs; None: not within the run): {summary['time_to_order_fs']}")
    (workdir / "compare.json").write_text(json.dumps({"runs": runs, "summary": summary, "dt_fs": dt_fs,
                                                      "alpha": alpha}, indent=1))
    plot_compare(runs, workdir / "compare.png")


def plot_compare(runs: dict, path: Path) -> None:
    from ase_deepspin.figures import new_figure

    fig = new_figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("oracle_energy_eV_per_site", "mean_abs_chirality"),
                              ("energy by the oracle (meV/site)", "mean |χ| over triangles")):
        for name, colour in (("oracle", "k"), ("model", "C1")):
            for k, run in enumerate(runs[name]):
                t = [r["t_fs"] for r in run]
                y = np.array([r[key] for r in run]) * (1e3 if "energy" in key else 1.0)
                ax.plot(t, y, color=colour, alpha=0.7, lw=1,
                        label=f"LLG driven by the {name}" if k == 0 else None)
        ax.set_xlabel("time (fs)")
        ax.set_ylabel(label)
    axes[1].axhline(4 / (3 * np.sqrt(3)), color="grey", ls=":", label="tetrahedral order")
    axes[1].legend(loc="lower right")
    fig.suptitle("12 × 12 s–d lattice quenched from random spins (T = 0, α = 0.2): oracle vs model, same starts")
    fig.savefig(path, dpi=120)


def oracle_seconds_per_call(sizes=((12, 12), (18, 18), (24, 24))) -> dict:
    """The oracle's time per call (s) at a few sizes and the prefactor c of c·N³ fitted to them."""
    rng = np.random.default_rng(0)
    sites, seconds = [], []
    for size in sizes:
        atoms = triangular_lattice(size, SPACING)
        atoms.set_initial_magnetic_moments(random_spins(rng, len(atoms)))
        atoms.calc = oracle()
        atoms.get_potential_energy()
        atoms.set_initial_magnetic_moments(random_spins(rng, len(atoms)))
        begin = time.perf_counter()
        atoms.calc.get_magnetic_torques(atoms)
        sites.append(len(atoms))
        seconds.append(time.perf_counter() - begin)
    # the median of t/N³ over the sizes: one size slowed by a busy machine does not set the extrapolation
    return {"sites": sites, "seconds": seconds,
            "c_per_site_cubed": float(np.median(np.array(seconds) / np.array(sites, dtype=float) ** 3))}


def coarsen(workdir: Path, model: Path, size: int, steps: int, minutes: float, dt_fs: float = 1.0,
            alpha: float = 0.5, seed: int = 3) -> None:
    """A quench of a size × size lattice driven by the compressed model: L(t) of the chirality domains."""
    from ase_deepspin import DeepSpinCalculator, compress_model
    from ase_deepspin.analysis.chirality import domain_size, scalar_chirality
    from ase_deepspin.io import load_model

    shape = (size, size)
    atoms = triangular_lattice(shape, SPACING)
    atoms.set_initial_magnetic_moments(random_spins(np.random.default_rng(seed), len(atoms)))
    atoms.calc = DeepSpinCalculator(compress_model(load_model(model)))
    md = SpinLatticeDynamics(atoms, dt_fs=dt_fs, alpha=alpha, lattice="frozen")
    marks = sorted(set(np.unique(np.geomspace(1, steps, 40).astype(int)).tolist()))
    records, done, begin = [], 0, time.perf_counter()
    for mark in marks:
        md.run(mark - done)
        done = mark
        up, down = scalar_chirality(atoms.get_initial_magnetic_moments(), shape)
        records.append({"step": done, "t_fs": done * dt_fs, "wall_s": time.perf_counter() - begin,
                        "energy_eV_per_site": atoms.get_potential_energy() / len(atoms),
                        "mean_abs_chirality": float(np.mean(np.abs([up, down]))),
                        "domain_size_A": domain_size(0.5 * (up + down), SPACING)})
        print(json.dumps(records[-1]), flush=True)
        (workdir / "coarsen.json").write_text(json.dumps({"size": shape, "dt_fs": dt_fs, "alpha": alpha,
                                                          "records": records}, indent=1))
        if time.perf_counter() - begin > 60 * minutes:
            print(f"stopped after {minutes} minutes at step {done}", flush=True)
            break
    steps_per_s = done / records[-1]["wall_s"]
    cost = oracle_seconds_per_call()
    oracle_step_s = 2 * cost["c_per_site_cubed"] * len(atoms) ** 3  # SIB: two calls per step
    # the fit starts once the local tetrahedral order has formed (|χ| at 3/4 of its ordered value)
    formed = [r for r in records if r["mean_abs_chirality"] > 0.75 * 4 / (3 * np.sqrt(3)) and r["t_fs"] > 0]
    fit = None
    if len(formed) >= 4:
        x, y = np.log([r["t_fs"] for r in formed]), np.log([r["domain_size_A"] for r in formed])
        (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
        fit = {"exponent": float(slope), "standard_error": float(np.sqrt(cov[0, 0])), "from_fs": formed[0]["t_fs"],
               "to_fs": formed[-1]["t_fs"], "points": len(formed), "intercept": float(intercept)}
        print(f"L(t) ∝ t^n from {fit['from_fs']:.0f} to {fit['to_fs']:.0f} fs: n = {slope:.3f} ± "
              f"{fit['standard_error']:.3f} (Allen–Cahn 1/2)")
    print(f"{len(atoms)} sites: the model {steps_per_s:.3f} steps/s ({1 / steps_per_s:.1f} s per step); the oracle "
          f"{oracle_step_s:.3g} s per step extrapolated from c·N³ (measured {cost['seconds']} s per call at "
          f"{cost['sites']} sites)")
    (workdir / "coarsen.json").write_text(json.dumps(
        {"size": shape, "dt_fs": dt_fs, "alpha": alpha, "records": records, "fit": fit,
         "model_steps_per_s": steps_per_s, "oracle": cost, "oracle_seconds_per_step_extrapolated": oracle_step_s},
        indent=1))
    plot_coarsening(records, fit, shape, workdir / "coarsen.png")


def plot_coarsening(records: list[dict], fit: dict | None, shape, path: Path) -> None:
    from ase_deepspin.figures import new_figure

    t = np.array([r["t_fs"] for r in records])
    keep = t > 0
    fig = new_figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    axes[0].loglog(t[keep], np.array([r["domain_size_A"] for r in records])[keep] / SPACING, "o-", ms=3,
                   label="chirality domains")
    if fit is not None:
        span = np.geomspace(fit["from_fs"], fit["to_fs"], 20)
        axes[0].loglog(span, np.exp(fit["intercept"]) * span ** fit["exponent"] / SPACING, "k--",
                       label=f"fit: n = {fit['exponent']:.2f} ± {fit['standard_error']:.2f}")
        axes[0].loglog(span, np.exp(fit["intercept"]) * fit["from_fs"] ** (fit["exponent"] - 0.5) * span**0.5
                       / SPACING, ":", color="grey", label="Allen–Cahn t^1/2")
    axes[0].set_xlabel("time (fs)")
    axes[0].set_ylabel("domain size L (lattice spacings)")
    axes[0].legend()
    axes[1].semilogx(t[keep], np.array([r["mean_abs_chirality"] for r in records])[keep], "o-", ms=3)
    axes[1].axhline(4 / (3 * np.sqrt(3)), color="grey", ls=":", label="tetrahedral order")
    axes[1].set_xlabel("time (fs)")
    axes[1].set_ylabel("mean |χ| over triangles")
    axes[1].legend()
    fig.suptitle(f"{shape[0]} × {shape[1]} s–d lattice quenched from random spins, LLG with the ML model")
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["data", "train", "test", "ground", "compare", "coarsen"])
    parser.add_argument("--workdir", type=Path, default=Path("runs/kondo"))
    parser.add_argument("--frames", type=int, default=160, help="frames per kind (random, and each temperature)")
    parser.add_argument("--model", type=Path, default=None, help="default: WORKDIR/model.pt")
    parser.add_argument("--starts", type=int, default=3, help="random starts (ground, compare)")
    parser.add_argument("--steps", type=int, default=None, help="LLG steps (compare: 1500, coarsen: 600)")
    parser.add_argument("--size", type=int, default=100, help="coarsen: sites along each axis")
    parser.add_argument("--minutes", type=float, default=40.0, help="coarsen: stop after this wall time")
    args = parser.parse_args()
    if args.stage == "data":
        make_data(args.workdir, args.frames)
    elif args.stage == "train":
        subprocess.run([sys.executable, "-m", "ase_deepspin.cli", "train", str(HERE / "kondo_train.yaml")],
                       check=True)
    elif args.stage == "test":
        test(args.workdir, args.model or args.workdir / "model.pt")
    elif args.stage == "ground":
        ground_state(args.workdir, args.model or args.workdir / "model.pt", args.starts)
    elif args.stage == "compare":
        compare(args.workdir, args.model or args.workdir / "model.pt", args.starts, args.steps or 1500)
    else:
        coarsen(args.workdir, args.model or args.workdir / "model.pt", args.size, args.steps or 600, args.minutes)


if __name__ == "__main__":
    main()
