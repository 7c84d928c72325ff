"""Training steps per second at DeePMD-kit's NiO spin example size (batch 3, fp64), beside DeePMD-kit itself.

Same network sizes (se_e2_a sel [60, 60], rcut 5.6 Å, embedding [25, 50, 100], axis 16, fitting [240, 240, 240]),
same batch (3 frames of the 32-atom DeltaSpin NiO cells), same number of threads for both codes. This
package runs three variants: the pseudo-atom model as DeePMD-kit has it (``time_reversal`` off: the same
function class), the same symmetrised under time reversal (its blocks run twice) and the spin-invariant
descriptor. DeePMD-kit 3.2 (PyTorch backend) runs where it is installed (``--deepmd-python``, default
``$ASE_DEEPSPIN_DEEPMD_PYTHON`` or the reference-codes venv): its steps/s come from the wall times it logs,
warm-up excluded. Repeats alternate the codes; every rate is reported per repeat.

    python benchmarks/bench_training.py [--threads 1] [--steps 60] [--repeats 2] [--out benchmarks/results/training.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ase_deepspin.io.frames import read_frames
from ase_deepspin.model import DeepSpinModel, ModelConfig
from ase_deepspin.training.config import TrainConfig
from ase_deepspin.training.train import PreparedFrames, take_step

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nio-deltaspin"
WARM_UP = 10
VARIANTS = {"pseudo-atom (as DeePMD-kit)": {"virtual_scale": [0.314, 0.0], "time_reversal": False},
            "pseudo-atom, time-reversal symmetrised": {"virtual_scale": [0.314, 0.0], "time_reversal": True},
            "spin invariants": {"virtual_scale": [0.0, 0.0], "descriptor": "spin_invariant", "magnetic": [True, False]}}


def ours(overrides: dict, steps: int) -> float:
    """Steps/s of this package's training step on 30 NiO frames, batches of 3."""
    model_cfg = ModelConfig(type_map=["Ni", "O"], **overrides)
    cfg = TrainConfig(model=model_cfg, systems=[str(DATA)], batch_size=3)
    model = DeepSpinModel(model_cfg)
    data = PreparedFrames(read_frames(DATA)[:30], model)
    model.set_environment_statistics(data.items)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(WARM_UP):
        take_step(model, optimizer, data.batch([3 * step % 27 + k for k in range(3)]), cfg, step)
    start = time.perf_counter()
    for step in range(steps):
        take_step(model, optimizer, data.batch([3 * step % 27 + k for k in range(3)]), cfg, step)
    return steps / (time.perf_counter() - start)


def deepmd_input(steps: int) -> dict:
    """DeePMD-kit's NiO spin example (examples/spin/se_e2_a), batch 3, logging after the warm-up and at the end."""
    return {
        "model": {"type_map": ["Ni", "O"],
                  "descriptor": {"type": "se_e2_a", "sel": [60, 60], "rcut_smth": 5.4, "rcut": 5.6,
                                 "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16, "seed": 1},
                  "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1},
                  "spin": {"use_spin": [True, False], "virtual_scale": [0.314]}},
        "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 1e-3, "stop_lr": 1e-5},
        "loss": {"type": "ener_spin", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_fr": 1000,
                 "limit_pref_fr": 1, "start_pref_fm": 1000, "limit_pref_fm": 1},
        "training": {"training_data": {"systems": [str(DATA / "data_0")], "batch_size": 3},
                     "numb_steps": WARM_UP + steps, "seed": 1, "disp_freq": WARM_UP, "save_freq": 10 ** 6}}


def deepmd(python: str, steps: int, threads: int) -> float:
    """Steps/s of DeePMD-kit's `dp --pt train`, from the wall times it logs after the warm-up."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DP_INTRA_OP_PARALLELISM_THREADS": str(threads),
           "DP_INTER_OP_PARALLELISM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "input.json").write_text(json.dumps(deepmd_input(steps)))
        done = subprocess.run([python, "-m", "deepmd", "--pt", "train", "input.json", "--skip-neighbor-stat"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError("DeePMD-kit training failed:\n" + done.stderr[-2000:])
        # "Batch      20: total wall time = 4.52 s, ..." (wall time since the previous such line)
        walls = [float(wall) for batch, wall in
                 re.findall(r"Batch\s+(\d+): total wall time = ([0-9.]+) s", done.stderr + done.stdout)
                 if int(batch) > WARM_UP]
    if not walls:
        raise RuntimeError("no wall times in DeePMD-kit's log")
    return steps / sum(walls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--deepmd-python", default=os.environ.get("ASE_DEEPSPIN_DEEPMD_PYTHON",
                                                                  "/tmp/reference-codes/deepmd/bin/python"))
    parser.add_argument("--out", default="benchmarks/results/training.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer = args.deepmd_python if Path(args.deepmd_python).is_file() else None
    if peer is None:
        print(f"DeePMD-kit not found at {args.deepmd_python}: this package only")
    rows = []
    for repeat in range(args.repeats):
        rates = {name: ours(overrides, args.steps) for name, overrides in VARIANTS.items()}
        if peer is not None:
            rates["DeePMD-kit 3.2 (--pt)"] = deepmd(peer, args.steps, args.threads)
        rows.append({"repeat": repeat, "threads": args.threads, "batch_size": 3, "dtype": "float64",
                     "steps_per_s": rates})
        print(json.dumps(rows[-1]), flush=True)
    if peer is not None:
        for name in VARIANTS:
            ratios = [r["steps_per_s"][name] / r["steps_per_s"]["DeePMD-kit 3.2 (--pt)"] for r in rows]
            print(f"{name}: {min(ratios):.2f}-{max(ratios):.2f}x DeePMD-kit's steps/s at {args.threads} thread(s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
