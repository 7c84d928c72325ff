"""Figures of training and evaluation: learning curves and parity plots (PNG, see :mod:`ase_deepspin.figures`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from ..figures import new_figure


def plot_learning_curve(curve: list[dict], path: str | Path) -> Path:
    """Validation and training RMSEs against step (log scales): E meV/atom, F meV/Å, ω meV/μB."""
    steps = np.array([r["step"] for r in curve])
    fig = new_figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    marker = "o" if len(curve) < 30 else None  # a short run's few points stay visible
    for ax, key, label in zip(axes, "efm", ["energy (meV/atom)", "force (meV/Å)", "torque (meV/μB)"]):
        ax.set_xlabel("step")
        ax.set_ylabel(f"RMSE {label}")
        train = np.array([1e3 * r[f"train_{key}"] for r in curve])
        val = np.array([1e3 * r[f"val_{key}"] for r in curve])
        if not (np.any(train > 0) or np.any(val > 0)):  # frames without these labels (forces of frozen lattices)
            ax.text(0.5, 0.5, "not labelled", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.loglog(steps, train, lw=0.8, alpha=0.6, marker=marker, ms=3, label="train batch")
        ax.loglog(steps, val, lw=1.5, marker=marker, ms=3, label="validation")
        # a run spanning less than a decade gets labelled minor ticks on a log axis, which overlap
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].legend()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_parity(pairs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Parity plots: ``pairs`` maps a label (with units) to (reference, predicted) arrays.

    Each panel is square with equal axes, at most five ticks per axis (so labels do not overlap), and
    states N (values compared), RMSE and MAE in the label's units inside the panel.
    """
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(figsize=(4.2 * len(pairs), 4.2))
    axes = fig.subplots(1, len(pairs), squeeze=False)
    for ax, (label, (ref, pred)) in zip(axes[0], pairs.items()):
        ref, pred = np.ravel(ref), np.ravel(pred)
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
        ax.scatter(ref, pred, s=4, alpha=0.5)
        error = pred - ref
        ax.text(0.04, 0.96, f"N = {len(ref)}\nRMSE {np.sqrt(np.mean(error**2)):.3g}\nMAE {np.mean(np.abs(error)):.3g}",
                transform=ax.transAxes, va="top", ha="left", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})
        ax.set(title=label, xlabel="reference", ylabel="model", xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad),
               aspect="equal")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(5))
    fig.savefig(path, dpi=120)
    return Path(path)
