"""Where a model is guessing: committee observers for dynamics and minimisers, and the active-learning loop.

A committee calculator (``DeepSpinCalculator([a, b, ...])``) computes DeePMD-kit's model deviation with
every evaluation (see :func:`ase_deepspin.calculators.deepspin.committee_deviations`). :class:`DeviationLog`
attached to any ASE dynamics or optimizer (``SpinLatticeDynamics``, ``SpinLBFGS``, ``ase.optimize``)
writes it per step from those results: it never evaluates the model itself, so unused it costs nothing
and used it costs a line of text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.frames import Frame
from .config import read_yaml

COLUMNS = ("max_devi_f", "avg_devi_f", "max_devi_fm", "avg_devi_fm", "devi_e")


class DeviationLog:
    """Per-call log of a committee's model deviation: ``dyn.attach(DeviationLog(atoms, "devi.log"), interval=10)``.

    Columns: call number, then max/mean force deviation (eV/Å), max/mean torque deviation over magnetic
    atoms (eV/μB) and energy deviation (eV/atom). ``logfile`` is a path, an open file or ``"-"`` (standard
    output). ``history`` keeps the rows as a list of dicts. Raises if ``atoms`` has no committee calculator.
    """

    def __init__(self, atoms, logfile="-"):
        calc = atoms.calc
        if calc is None or "model_deviation" not in getattr(calc, "implemented_properties", ()):
            raise ValueError("DeviationLog needs a committee calculator: DeepSpinCalculator([model_a, model_b, ...])")
        self.atoms = atoms
        self.history = []
        self._owned = isinstance(logfile, (str, os.PathLike)) and logfile != "-"
        self.file = sys.stdout if logfile == "-" else (open(logfile, "w") if self._owned else logfile)
        self.file.write(f"{'call':>8s}" + "".join(f"{c:>14s}" for c in COLUMNS) + "\n")

    def __call__(self):
        # the results of the step just taken (cached by ASE: no new evaluation unless the atoms changed)
        devi = self.atoms.calc.get_property("model_deviation", self.atoms)
        row = {c: float(devi[c]) for c in COLUMNS}
        self.history.append(row)
        self.file.write(f"{len(self.history):8d}" + "".join(f"{row[c]:14.6e}" for c in COLUMNS) + "\n")
        self.file.flush()

    def close(self):
        if self._owned:
            self.file.close()

    def maxima(self) -> dict:
        """Largest value of each column over the logged calls."""
        return {c: float(np.max([r[c] for r in self.history])) for c in COLUMNS}


# ------------------------------------------------------------------------------------------ the loop
@dataclass
class ExploreConfig:
    """One active-learning run (DeePMD-kit/DP-GEN's loop for spin models; YAML keys are these names).

    ``training``: a training YAML (``ase-deepspin train`` format; its systems are replaced by ``systems``
    plus every labelled iteration); ``members``: committee size. Iteration i explores at
    ``temperatures_K[i]`` (the last one repeats) from ``starts`` frames of ``start_systems`` (default:
    ``systems``; small cells where the oracle is costly), each spin turned by up to ``canting_rad[i]``,
    each cell strained by up to ``strain`` and lattice velocities drawn at that temperature, for ``steps``
    steps of ``dt_fs`` with Gilbert damping ``alpha`` (spin bath) and lattice friction ``friction_per_fs``
    (lattice bath), sampling every ``sample_every`` steps. A sample is accurate when max_devi_f <
    trust_f[0] and max_devi_fm < trust_fm[0], failed when either reaches its trust[1], a candidate
    otherwise; at most ``max_labels`` candidates per iteration are labelled (chosen at random with
    ``seed``) by the oracle, any ASE calculator with ``magnetic_torques`` (a DFT labeller such as
    :func:`~ase_deepspin.calculators.collinear_dft.gpaw_labeller`; ``oracle: "module:function"`` names a
    function that returns one, called with the keyword arguments ``oracle_settings``; ``oracle: gpaw``
    that one). With ``relative_energy_labels`` the oracle's energies have another zero than the data's (a
    DFT code other than the data's): each iteration's labels join the training YAML's
    ``relative_energy``. With ``warm_start`` each member of iteration i > 0 (and of the final committee)
    starts from the same member of iteration i − 1 and trains ``warm_steps`` steps (default: the
    training YAML's numb_steps) on all data, with the YAML's learning-rate schedule compressed into
    them. Units: eV/Å, eV/μB, K, fs.
    """

    training: str
    systems: list[str]
    members: int = 3
    iterations: int = 3
    temperatures_K: list[float] = field(default_factory=lambda: [100.0, 300.0, 600.0])
    canting_rad: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5])
    strain: float = 0.01
    starts: int = 4
    steps: int = 100
    sample_every: int = 10
    dt_fs: float = 1.0
    alpha: float = 0.1
    friction_per_fs: float = 0.01
    trust_f: tuple = (0.05, 0.3)
    trust_fm: tuple = (0.02, 0.2)
    max_labels: int = 20
    seed: int = 0
    warm_start: bool = False
    warm_steps: int | None = None
    oracle: str | None = None  # "module:function" returning the labelling ASE calculator (for the CLI)
    oracle_settings: dict = field(default_factory=dict)  # keyword arguments of that function
    start_systems: list[str] | None = None
    relative_energy_labels: bool = False

    @classmethod
    def from_yaml(cls, path) -> "ExploreConfig":
        raw = read_yaml(path) or {}
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown explore keys {sorted(unknown)}")
        missing = {"training", "systems"} - set(raw)
        if missing:
            raise ValueError(f"{path}: explore needs {sorted(missing)} (a training YAML and the starting data)")
        base = Path(path).resolve().parent  # relative paths are relative to the YAML
        raw["training"] = str(base / raw["training"])
        raw["systems"] = [str(base / s) for s in raw["systems"]]
        if raw.get("start_systems"):
            raw["start_systems"] = [str(base / s) for s in raw["start_systems"]]
        return cls(**raw)


def load_oracle(spec: str, settings: dict | None = None):
    """The calculator returned by the function ``"module:function"`` names, called with ``settings`` as
    keyword arguments. ``"gpaw"`` names :func:`~ase_deepspin.calculators.collinear_dft.gpaw_labeller`."""
    import importlib

    if spec == "gpaw":
        spec = "ase_deepspin.calculators.collinear_dft:gpaw_labeller"
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"oracle must be 'gpaw' or 'module:function', got {spec!r}")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"oracle {spec}: {err}") from None
    try:
        calc = function(**(settings or {}))
    except TypeError as err:
        raise ValueError(f"oracle {spec} does not take the settings {sorted(settings or {})}: {err}") from None
    if "magnetic_torques" not in getattr(calc, "implemented_properties", ()):
        raise ValueError(f"the oracle {spec} gives no magnetic_torques; active learning needs them as labels")
    return calc


def label(atoms, oracle) -> Frame:
    """A labelled frame: the oracle's energy (eV), forces (eV/Å) and magnetic torques (eV/μB). An oracle
    with a ``label_frame(atoms)`` method (a DFT labeller, :class:`~ase_deepspin.calculators.collinear_dft.
    CollinearDFT`) makes the frame itself: which labels it carries and the structure it labelled are its own."""
    if hasattr(oracle, "label_frame"):
        return oracle.label_frame(atoms)
    atoms = atoms.copy()
    atoms.calc = oracle
    torques = oracle.get_property("magnetic_torques", atoms)
    return Frame(symbols=np.array(atoms.get_chemical_symbols()), positions=atoms.positions.copy(),
                 cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(), spins=atoms.get_initial_magnetic_moments(),
                 energy=float(atoms.get_potential_energy()), forces=atoms.get_forces().copy(),
                 torques=np.array(torques))


def _perturbed(frame: Frame, canting: float, strain: float, rng):
    """The frame's structure with every spin turned by a random angle up to ``canting`` (rad) about a random
    axis and the cell (and atoms) strained by a random symmetric strain of entries up to ``strain``."""
    from ..spins import geodesic_exp, tangent

    atoms = frame.to_atoms()
    atoms.calc = None
    spins = atoms.get_initial_magnetic_moments()
    magnetic = np.linalg.norm(spins, axis=1) > 0
    length = np.linalg.norm(spins[magnetic], axis=1, keepdims=True)
    unit = spins[magnetic] / length
    direction = tangent(rng.normal(size=unit.shape), unit)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    angles = rng.uniform(0.0, canting, size=(len(unit), 1))
    spins[magnetic] = geodesic_exp(unit, direction * angles) * length
    atoms.set_initial_magnetic_moments(spins)
    eps = rng.uniform(-strain, strain, size=(3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    return atoms


def classify(devi: dict, cfg: ExploreConfig) -> str:
    """'accurate', 'candidate' or 'failed' by the trust levels of forces and torques."""
    f, fm = devi["max_devi_f"], devi["max_devi_fm"]
    if f >= cfg.trust_f[1] or fm >= cfg.trust_fm[1]:
        return "failed"
    if f < cfg.trust_f[0] and fm < cfg.trust_fm[0]:
        return "accurate"
    return "candidate"


def explore_once(models, frames: list[Frame], cfg: ExploreConfig, iteration: int, rng):
    """Spin-lattice dynamics with the committee from perturbed data frames; returns samples as
    (atoms, model deviation dict, class)."""
    from ase.md.velocitydistribution import thermalize_momenta

    from ..calculators.deepspin import DeepSpinCalculator
    from ..dynamics import SpinLatticeDynamics

    temperature = cfg.temperatures_K[min(iteration, len(cfg.temperatures_K) - 1)]
    canting = cfg.canting_rad[min(iteration, len(cfg.canting_rad) - 1)]
    calc = DeepSpinCalculator(list(models))
    samples = []
    for k in rng.choice(len(frames), size=min(cfg.starts, len(frames)), replace=False):
        atoms = _perturbed(frames[int(k)], canting, cfg.strain, rng)
        atoms.calc = calc
        # the lattice starts at the temperature it explores (a bath alone needs 1/friction to heat it)
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        dynamics = SpinLatticeDynamics(atoms, dt_fs=cfg.dt_fs, alpha=cfg.alpha, temperature_K=temperature,
                                       lattice_friction_per_fs=cfg.friction_per_fs,
                                       rng=np.random.default_rng(rng.integers(2**32)))
        for _ in range(cfg.steps // cfg.sample_every):
            dynamics.run(cfg.sample_every)
            devi = dict(calc.get_property("model_deviation", atoms))
            snapshot = atoms.copy()
            snapshot.calc = None
            samples.append((snapshot, devi, classify(devi, cfg)))
    return samples


def committee_rmse(models, frames: list[Frame]) -> dict:
    """The committee's (mean's) RMSE of forces (eV/Å) and torques on magnetic atoms (eV/μB) on labelled frames,
    over the torque labels they carry (across the spins only for ``torque_labels="transverse"``); torques
    None where no frame has torque labels."""
    from ..calculators.deepspin import DeepSpinCalculator
    from ..spins import tangent, unit_vectors

    calc = DeepSpinCalculator(list(models))
    df, dm = [], []
    for f in frames:
        atoms = f.to_atoms()
        atoms.calc = calc
        df.append(atoms.get_forces() - f.forces)
        if f.torque_labels == "none":
            continue
        magnetic = np.linalg.norm(f.spins, axis=1) > 0
        error = (calc.get_magnetic_torques(atoms) - f.torques)[magnetic]
        if f.torque_labels == "transverse":
            error = tangent(error, unit_vectors(f.spins[magnetic])[0])
        dm.append(error)
    rms = lambda parts: float(np.sqrt(np.mean(np.concatenate(parts) ** 2))) if parts else None  # noqa: E731
    return {"forces": rms(df), "torques": rms(dm)}


def run_active_learning(cfg: ExploreConfig, oracle, workdir, log=print) -> list[dict]:
    """The loop of the DeepSPIN paper (Fig. 1a): train a committee, explore, label candidates, retrain.

    Everything lives in ``workdir``: ``iter_000/members/member_k`` (the committee of each iteration),
    ``iter_i/labels`` (the new frames as a DeePMD-kit npy system), ``iter_i/summary.json``,
    ``summary.json`` and ``active_learning.png`` (accurate / candidate / failed fractions and the
    committee's RMSE on the new labels, per iteration). Rerunning continues an interrupted loop: finished
    iterations and finished committee members are kept. Returns the per-iteration summaries.
    """
    from ..io.frames import read_frames, write_deepmd_npy
    from .config import TrainConfig

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    type_map = TrainConfig.from_yaml(cfg.training).model.type_map
    data_frames = [f for s in (cfg.start_systems or cfg.systems) for f in read_frames(s)]
    labelled = []  # systems written by earlier iterations
    summaries = []
    models = None
    for i in range(cfg.iterations):
        folder = workdir / f"iter_{i:03d}"
        iteration_rng = np.random.default_rng([cfg.seed, i])  # the same choices when an iteration is rerun
        models = _committee(cfg, labelled, folder / "members", models)
        done = folder / "summary.json"
        if done.is_file():
            summary = json.loads(done.read_text())
        else:
            samples = explore_once(models, data_frames, cfg, i, iteration_rng)
            candidates = [s for s in samples if s[2] == "candidate"]
            chosen = [candidates[int(k)] for k in iteration_rng.permutation(len(candidates))[: cfg.max_labels]]
            frames = [label(atoms, oracle) for atoms, _, _ in chosen]
            scores = [{k: devi[k] for k in ("max_devi_f", "max_devi_fm", "devi_e")} for _, devi, _ in chosen]
            counts = {c: sum(s[2] == c for s in samples) for c in ("accurate", "candidate", "failed")}
            summary = {"iteration": i, "temperature_K": cfg.temperatures_K[min(i, len(cfg.temperatures_K) - 1)],
                       "samples": len(samples), **{f"{c}_fraction": n / max(len(samples), 1) for c, n in counts.items()},
                       "labelled": len(frames), "committee_deviation_of_labelled": scores,
                       "rmse_on_new_labels": committee_rmse(models, frames) if frames else None}
            if frames:
                write_deepmd_npy(folder / "labels", frames, type_map)
            done.write_text(json.dumps(summary, indent=1))
        if summary["labelled"]:
            labelled.append(str(folder / "labels"))
        summaries.append(summary)
        log(f"iteration {i}: {summary['samples']} samples at {summary['temperature_K']:g} K, accurate "
            f"{summary['accurate_fraction']:.2f} candidate {summary['candidate_fraction']:.2f} failed "
            f"{summary['failed_fraction']:.2f}; {summary['labelled']} labelled"
            + ("" if not summary["rmse_on_new_labels"] else
               f", committee RMSE on them F {summary['rmse_on_new_labels']['forces']:.3g} eV/Å"
               + ("" if summary["rmse_on_new_labels"]["torques"] is None else
                  f", ω {summary['rmse_on_new_labels']['torques']:.3g} eV/μB")))
    (workdir / "summary.json").write_text(json.dumps(summaries, indent=1))
    plot_active_learning(summaries, workdir / "active_learning.png")
    return summaries


def _committee(cfg: ExploreConfig, labelled: list[str], folder: Path, previous: list[Path] | None) -> list[Path]:
    """Train (or find) a committee on the data plus ``labelled`` in ``folder``, warm-started from
    ``previous`` when the configuration asks for it."""
    from .config import TrainConfig
    from .train import train_ensemble

    train_cfg = TrainConfig.from_yaml(cfg.training)
    train_cfg = dataclasses.replace(train_cfg, systems=[*cfg.systems, *labelled], output_dir=str(folder),
                                    relative_energy=[*train_cfg.relative_energy,
                                                     *(labelled if cfg.relative_energy_labels else [])])
    warm = cfg.warm_start and previous is not None
    if warm and cfg.warm_steps is not None:
        train_cfg = dataclasses.replace(train_cfg, numb_steps=cfg.warm_steps,
                                        decay_steps=min(train_cfg.decay_steps, cfg.warm_steps),
                                        disp_freq=min(train_cfg.disp_freq, cfg.warm_steps),
                                        save_freq=min(train_cfg.save_freq, cfg.warm_steps))
    return train_ensemble(train_cfg, cfg.members, progress=False, log=lambda *a: None,
                          init_models=previous if warm else None)


def final_committee(cfg: ExploreConfig, workdir) -> list[Path]:
    """Train (or find) the committee on all data the loop labelled: ``<workdir>/final/member_k``
    (warm-started from the last iteration's members when ``cfg.warm_start``)."""
    workdir = Path(workdir)
    labelled = sorted(str(p) for p in workdir.glob("iter_*/labels"))
    last = sorted(workdir.glob("iter_*/members"))
    previous = [last[-1] / f"member_{k}" / "model.pt" for k in range(cfg.members)] if last else None
    return _committee(cfg, labelled, workdir / "final", previous)


def plot_active_learning(summaries: list[dict], path) -> None:
    """Fractions of accurate / candidate / failed samples and the RMSE on new labels, per iteration."""
    from matplotlib.ticker import MaxNLocator

    from ..figures import new_figure

    fig = new_figure(figsize=(8, 3.2))
    left, right = fig.subplots(1, 2)
    it = [s["iteration"] for s in summaries]
    for name, marker in (("accurate", "o"), ("candidate", "s"), ("failed", "x")):
        left.plot(it, [s[f"{name}_fraction"] for s in summaries], marker=marker, label=name)
    left.set(xlabel="iteration", ylabel="fraction of samples", ylim=(-0.05, 1.05))
    left.legend()
    rows = [s for s in summaries if s["rmse_on_new_labels"]]
    right.plot([s["iteration"] for s in rows], [s["rmse_on_new_labels"]["forces"] for s in rows], "o-",
               label="forces (eV/Å)")
    # labels without torques, or with torques at round-off (the transverse part of collinear frames, which a
    # model of spin invariants gets exactly): nothing to show on a log scale
    rows = [s for s in rows if (s["rmse_on_new_labels"]["torques"] or 0.0) > 1e-12]
    right.plot([s["iteration"] for s in rows], [s["rmse_on_new_labels"]["torques"] for s in rows], "s-",
               label="torques (eV/μB)")
    right.set(xlabel="iteration", ylabel="committee RMSE on new labels", yscale="log")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.legend()
    fig.savefig(path, dpi=120)
