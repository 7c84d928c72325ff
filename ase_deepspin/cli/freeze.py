"""``ase-deepspin freeze``."""

from __future__ import annotations

HELP = "model file from a training checkpoint"


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--storage-dtype", choices=["float64", "float32"], default="float64")


def run(args):
    import torch

    from ..training.train import freeze

    out = freeze(args.checkpoint, args.out, storage_dtype=getattr(torch, args.storage_dtype))
    print(f"model written to {out}")
