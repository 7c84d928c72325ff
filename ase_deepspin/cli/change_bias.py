"""``ase-deepspin change-bias``."""

from __future__ import annotations

HELP = "refit a trained model's energy bias on its training frames (DeePMD-kit's change-bias)"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model file (or a shipped model's name, with -o)")
    parser.add_argument("-o", "--output", help="write here instead of in place")
    parser.add_argument("--systems", nargs="+", help="the training data folders, if not where the run recorded them")


def run(args):
    from ..training.train import change_bias

    shift = change_bias(args.model, args.output, systems=args.systems)
    print(f"energy bias shifted by {', '.join(f'{1e3 * v:+.3f}' for v in shift)} meV/atom (per type), fitted on "
          f"the run's training frames; written to {args.output or args.model}")
