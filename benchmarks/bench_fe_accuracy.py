"""Accuracy of an Fe model on the FCC-Fe DeltaSpin data, system by system (issue 23's table).

For each system (or held-out block) of ``../shared/data/fe-deltaspin``: RMSE of energy per atom
(and its offset, the mean signed error), forces, and torques in total, along S (longitudinal) and
across S (transverse), next to the null predictions (mean energy of the frames, zero forces, zero
torques), and whether the training config held it out. Frames with moments below 0.5 μB (the
vacancy's neighbours) get their own torque rows.

    python benchmarks/bench_fe_accuracy.py [--model fe] [--config examples/fe_train.yaml] [--out fe_accuracy.json]

``--baseline-only`` scores, instead of a trained model, the config's spin baseline alone, fitted to the
config's training frames as training fits it before the network learns (the network's output zeroed):
what the Heisenberg–Landau form (with or without biquadratic exchange) explains by itself.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.io.frames import hold_out, read_frames
from ase_deepspin.training.evaluate import error_table, predict, torque_parts
from ase_deepspin.training.config import TrainConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fe-deltaspin"
SMALL_MOMENT = 0.5  # μB

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="fe")
parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "examples" / "fe_train.yaml"))
parser.add_argument("--out", default="fe_accuracy.json")
parser.add_argument("--baseline-only", action="store_true", help="score the config's spin baseline alone")
args = parser.parse_args()


def fitted_baseline(cfg):
    """The config's model with its baseline fitted to the training frames and its network's output zeroed."""
    from ase_deepspin.model import DeepSpinModel
    from ase_deepspin.model.baseline import fit_spin_baseline
    from ase_deepspin.training.train import PreparedFrames, initial_energy_bias, select_frames

    _, train_frames, _ = select_frames(cfg)
    model = DeepSpinModel(cfg.model)
    items = PreparedFrames(train_frames, model)
    model.set_environment_statistics(items.items)
    fit = fit_spin_baseline(model, items.items, forces=cfg.loss.baseline_fit_forces,
                            relative_f=cfg.loss.relative_f, relative_fm=cfg.loss.relative_fm)
    print(f"baseline fitted: training torque RMSE {1e3 * fit['before']:.2f} -> {1e3 * fit['after']:.2f} meV/μB")
    for net in model.fitting:
        net[-1].weight.data.zero_()
        net[-1].bias.data.zero_()
    initial_energy_bias(model, items, train_frames)
    return model


config = TrainConfig.from_yaml(args.config)
held_out = config.held_out
calc = DeepSpinCalculator(fitted_baseline(config) if args.baseline_only else args.model)
splits = dict(zip(("trained", "held out"), hold_out(read_frames(DATA), held_out)))
rows = []
for system in sorted(p for p in DATA.iterdir() if p.is_dir()):
    for split in ("held out", "trained"):
        subset = [f for f in splits[split] if Path(f.source.split("#")[0]).parts[-2] == system.name]
        if not subset:
            continue
        pairs = predict(calc, subset)
        table = error_table(pairs)
        reference, predicted = pairs["energy"]
        row = {"system": system.name, "split": split, "frames": len(subset),
               "energy_offset_meV_per_atom": 1e3 * float(np.mean(predicted - reference))}
        row |= {f"{k}_{v}": table[k][v] for k in table for v in ("rmse", "null")}
        spins = np.concatenate([f.spins for f in subset])
        small = np.linalg.norm(spins, axis=1) < SMALL_MOMENT
        if small.any():
            ref, pred = (v.reshape(-1, 3) for v in pairs["torques"])
            part = error_table({"torques": (ref[small].ravel(), pred[small].ravel())}
                               | torque_parts(spins[small], ref[small], pred[small]))
            row |= {f"small_moment_{k}_{v}": part[k][v] for k in part for v in ("rmse", "null")}
            row["small_moments"] = int(small.sum())
        rows.append(row)
        print(f"{system.name:22s} {split:9s} {len(subset):3d} frames  E {row['energy_rmse']:6.1f} "
              f"(offset {row['energy_offset_meV_per_atom']:+6.1f}, null {row['energy_null']:6.1f}) meV/atom  "
              f"F {row['forces_rmse']:6.0f} (null {row['forces_null']:5.0f}) meV/Å  "
              f"ω {row['torques_rmse']:5.1f} (null {row['torques_null']:5.1f}): along S "
              f"{row['torques_longitudinal_rmse']:5.1f} ({row['torques_longitudinal_null']:5.1f}), across "
              f"{row['torques_transverse_rmse']:5.1f} ({row['torques_transverse_null']:5.1f}) meV/μB", flush=True)
        if small.any():
            print(f"{'':22s} {'':9s} {row['small_moments']} moments < {SMALL_MOMENT} μB: ω {row['small_moment_torques_rmse']:.1f}"
                  f" (null {row['small_moment_torques_null']:.1f}) meV/μB")
Path(args.out).write_text(json.dumps(rows, indent=1))
print(f"written {args.out}")
