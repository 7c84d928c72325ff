"""Command line: ``ase-deepspin VERB``, one module per verb (each with ``HELP``, ``add_arguments`` and ``run``)."""

from __future__ import annotations

import argparse
import os
import sys

from . import (change_bias, compress, convert, doc_train_input, explore, freeze, info, label, model_devi, test,
               train)

VERBS = {"train": train, "doc-train-input": doc_train_input, "model-devi": model_devi, "explore": explore,
         "label": label, "test": test, "freeze": freeze, "change-bias": change_bias, "compress": compress, "info": info,
         "convert": convert}


def build_parser() -> argparse.ArgumentParser:
    """The ``ase-deepspin`` argument parser, one sub-parser per verb of :data:`VERBS`."""
    from ..version import __version__

    parser = argparse.ArgumentParser(prog="ase-deepspin", description="DeepSPIN spin-lattice potentials for ASE")
    parser.add_argument("--version", action="version", version=f"ase-deepspin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, verb in VERBS.items():
        verb.add_arguments(sub.add_parser(name, help=verb.HELP, description=verb.HELP))
    return parser


def main(argv=None) -> int:
    """Run ``ase-deepspin`` with ``argv`` (default: the process's); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        VERBS[args.command].run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"ase-deepspin {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (`info | head`)
        # Python's recipe: point stdout at devnull so that the flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
