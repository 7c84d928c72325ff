"""The shipped NiO model in LAMMPS with MPI, on the NiO Σ5 grain boundary, checked against DeepSpinCalculator.

Route: ``ase-deepspin convert nio nio.pth`` (a TorchScript module built from this package's own model:
spin baseline, ZBL wall and time-reversal symmetrisation included) -> DeePMD-kit's ``pair_style deepspin``
under ``mpirun -np N``: one energy/force/torque evaluation, then a ``min_style spin/lbfgs`` spin
minimisation like the paper's input (spins only, as the paper did), both compared with DeepSpinCalculator.

Needs the LAMMPS route of ``bash examples/setup_lammps_deepspin.sh`` (in ``.lammps-deepspin/`` or the
variables it prints).

    python examples/lammps_deepspin_gb.py [--model nio] [--compress] [--np 2] [--min-steps 10] [--overlap 0.05]

``--overlap 0.05`` (Å, default) deletes atoms as the paper's input does, leaving 11,328 atoms, among them
192 same-species pairs 0.079 Å apart (duplicates of the boundary's construction, see the data's SOURCE.md):
the model's ZBL wall gives them millions of eV, which a spin minimisation (spins only) does not feel.
``--overlap 1.6`` removes those too (10,752 atoms). Numbers measured here are in docs/guides/lammps.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ase_deepspin import DeepSpinCalculator, compress_model
from ase_deepspin.io.frames import read_lammps_spin
from ase_deepspin.io.lammps import (
    deepspin_input,
    lammps_route,
    printed_value,
    read_deepspin_dump,
    run_lammps,
    write_spin_data,
)
from ase_deepspin.io import load_model
from ase_deepspin.io.model_file import resolve_model_path
from ase_deepspin.io.torchscript import write_lammps_model

GB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nio-gb-sigma5" / "init.data"


def grain_boundary(path=GB, overlap: float = 0.05):
    """The Σ5 NiO boundary as in the paper's run (atoms closer than ``overlap`` Å to another removed: 11,328
    atoms), Ni moments from the file (μB), O moments zero."""
    return read_lammps_spin(path, ["Ni", "O"], delete_overlap=overlap, magnetic=["Ni"])


def relative(a, b) -> float:
    """max |a − b| / max |b|."""
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


class PeakMemory:
    """Largest resident set (GiB) of each running ``lmp`` process, sampled twice a second (Linux /proc)."""

    def __init__(self):
        self.peaks, self._stop = {}, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                # ranks only: the wheel's `lmp` launcher is a Python script of the same name
                if ("\nVmHWM:" in status and status.startswith("Name:\tlmp")
                        and not os.path.realpath(f"/proc/{pid}/exe").split("/")[-1].startswith("python")):
                    kib = int(status.split("\nVmHWM:")[1].split()[0])
                    self.peaks[pid] = max(self.peaks.get(pid, 0), kib)
            self._stop.wait(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def per_rank_gib(self) -> list[float]:
        # mpirun's own helper processes are named differently; every lmp binary is one rank
        return sorted(kib / 2**20 for kib in self.peaks.values())


def compare(atoms, model, workdir: Path, route: dict, nprocs: int, min_steps: int) -> dict:
    """LAMMPS (pair_style deepspin) vs DeepSpinCalculator on ``atoms``: relative differences, timings, memory."""
    moments = np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1)
    eta_s = max(model.config.virtual_scale) * float(moments.max())
    prism = write_spin_data(workdir / "system.data", atoms, model.config.type_map)
    write_lammps_model(model, workdir / "model.pth")
    text = deepspin_input("system.data", "model.pth", route["plugin"], model.config.type_map, skin=eta_s + 0.5,
                          minimize_steps=min_steps)
    start = time.perf_counter()
    with PeakMemory() as memory:
        output = run_lammps(text, workdir, route["lmp"], nprocs=nprocs, env=route["env"], timeout=7200)
    lammps_s = time.perf_counter() - start
    got = read_deepspin_dump(workdir / "deepspin.dump", prism)

    atoms.calc = DeepSpinCalculator(model)
    start = time.perf_counter()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    torques = atoms.calc.get_magnetic_torques(atoms)
    ase_s = time.perf_counter() - start
    result = {"atoms": len(atoms), "energy_eV": energy,
              "energy": abs(printed_value(output, "DEEPSPIN_ENERGY") - energy) / abs(energy),
              "forces": relative(got["forces"], forces), "torques": relative(got["torques"], torques),
              "lammps_wall_s": lammps_s, "ase_wall_s": ase_s, "peak_rss_per_rank_GiB": memory.per_rank_gib()}
    if min_steps > 0:
        relaxed = read_deepspin_dump(workdir / "deepspin.dump.min", prism)
        final = atoms.copy()
        final.set_initial_magnetic_moments(relaxed["moments"])
        final.calc = DeepSpinCalculator(model)
        e_min = printed_value(output, "DEEPSPIN_MIN_ENERGY")
        result.update(min_energy_drop_eV=energy - e_min,
                      min_energy=abs(e_min - final.get_potential_energy()) / abs(e_min),
                      min_torques=relative(relaxed["torques"], final.calc.get_magnetic_torques(final)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nio", help="model file or shipped model name (default: nio)")
    parser.add_argument("--compress", action="store_true", help="tabulate the embedding nets first (faster)")
    parser.add_argument("--np", type=int, default=2)
    parser.add_argument("--min-steps", type=int, default=10)
    parser.add_argument("--overlap", type=float, default=0.05, help="Å; atoms this close to another are deleted")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    route = lammps_route(required=True)
    model = load_model(resolve_model_path(args.model))
    if args.compress:
        model = compress_model(model)
    atoms = grain_boundary(overlap=args.overlap)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="deepspin-lammps-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = compare(atoms, model, workdir, route, args.np, args.min_steps)
    print(f"NiO Σ5 grain boundary, {result['atoms']} atoms, {args.model}{' (compressed)' if args.compress else ''}, "
          f"LAMMPS pair_style deepspin with mpirun -np {args.np}")
    print(f"  energy {result['energy_eV']:.6f} eV; relative differences to DeepSpinCalculator:")
    print(f"  energy {result['energy']:.2e}  forces {result['forces']:.2e}  torques {result['torques']:.2e}")
    if args.min_steps:
        print(f"  after {args.min_steps} spin/lbfgs steps: energy −{result['min_energy_drop_eV']:.4f} eV, "
              f"energy {result['min_energy']:.2e}, torques {result['min_torques']:.2e} vs DeepSpinCalculator")
    print(f"  peak memory per rank {', '.join(f'{m:.2f}' for m in result['peak_rss_per_rank_GiB'])} GiB")
    print(f"  wall: LAMMPS (incl. start-up, {args.min_steps} min steps) {result['lammps_wall_s']:.0f} s, "
          f"DeepSpinCalculator one evaluation {result['ase_wall_s']:.1f} s; files in {workdir}")


if __name__ == "__main__":
    main()
