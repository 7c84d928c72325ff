"""``ase-deepspin doc-train-input``."""

from __future__ import annotations

HELP = "reference of every key of the training YAML (Markdown)"


def add_arguments(parser) -> None:
    pass


def run(args):
    from ..training.config import input_reference

    print(input_reference())
