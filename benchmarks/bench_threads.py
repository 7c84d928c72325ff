"""Torch threads of a calculator call: the default (one thread below ``serial_below`` atoms) against one thread
and against two threads always, on small and large NiO cells (shipped model, energy + forces + torques).

Run it on a busy machine (another process on each core) and on an idle one: the default must be no slower
than one thread on small cells in both, and use the cores on large ones. Each repeat runs a block of
``--calls`` calls per setting (order rotated per repeat) and reports the medians and their ratios to one thread.

    python benchmarks/bench_threads.py [--sizes 32 256 2048] [--calls 15] [--repeats 3] [--out threads.json]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main():
    import torch

    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.io.frames import read_deepmd_npy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256, 2048])
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="threads.json")
    args = parser.parse_args()
    frame = read_deepmd_npy(SHARED / "nio-deltaspin" / "data_0")[0].to_atoms()
    settings = {"default, 2 threads": (2, {}), "1 thread": (1, {}), "2 threads always": (2, {"serial_below": 0})}
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        factor = round((size / len(frame)) ** (1 / 3))
        atoms = frame.repeat((factor, factor, factor))
        calcs = {name: DeepSpinCalculator("nio", **options) for name, (_, options) in settings.items()}
        names = list(settings)
        for repeat in range(args.repeats):
            times = {name: [] for name in settings}
            # blocks of calls per setting, in an order rotated per repeat, with a pause between blocks: the
            # OpenMP workers of a two-thread block spin for a while after it and would slow whatever runs next
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                torch.set_num_threads(settings[name][0])
                time.sleep(0.5)
                for _ in range(args.calls):
                    atoms.positions += rng.normal(scale=0.001, size=atoms.positions.shape)
                    atoms.calc = calcs[name]
                    start = time.perf_counter()
                    atoms.get_forces()
                    calcs[name].get_magnetic_torques(atoms)
                    times[name].append(time.perf_counter() - start)
            median = {name: float(np.median(t)) for name, t in times.items()}
            row = {"atoms": len(atoms), "repeat": repeat, "median_s": median,
                   "ratio_to_1_thread": {name: median[name] / median["1 thread"] for name in settings}}
            rows.append(row)
            print(f"{len(atoms):6d} atoms  " + "  ".join(f"{name} {1e3 * t:8.1f} ms" for name, t in median.items())
                  + "  ratios " + " ".join(f"{r:.2f}" for r in row["ratio_to_1_thread"].values()))
    out = Path(__file__).parent / "results" / args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "date": time.strftime("%F"),
                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
