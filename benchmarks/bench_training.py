"""Training steps per second with DeePMD-kit's NiO example model (batch 3, fp64).

    python benchmarks/bench_training.py [--threads 2] [--steps 100] [--out benchmarks/results/training.json]

For scale: DeePMD-kit 3.2 with the same input ran at about 1.5 steps/s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ase_deepspin.io.frames import read_frames
from ase_deepspin.model import DeepSpinModel, ModelConfig
from ase_deepspin.training.config import TrainConfig
from ase_deepspin.training.train import PreparedFrames, take_step

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nio-deltaspin"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results/training.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_cfg = ModelConfig(type_map=["Ni", "O"], virtual_scale=[0.314, 0.0])  # DeePMD-kit's example sizes
    cfg = TrainConfig(model=model_cfg, systems=[str(DATA)], batch_size=3)
    model = DeepSpinModel(model_cfg)
    data = PreparedFrames(read_frames(DATA)[:30], model)
    model.set_environment_statistics(data.items)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(5):  # warm-up
        take_step(model, optimizer, data.batch([step, step + 1, step + 2]), cfg, step)
    start = time.perf_counter()
    for step in range(args.steps):
        k = (3 * step) % 27
        take_step(model, optimizer, data.batch([k, k + 1, k + 2]), cfg, step)
    rate = args.steps / (time.perf_counter() - start)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{rate:.2f} steps/s, batch 3, {n_params} parameters, {args.threads} threads")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"steps_per_s": rate, "batch_size": 3, "parameters": n_params,
                                          "threads": args.threads}, indent=2))


if __name__ == "__main__":
    main()
