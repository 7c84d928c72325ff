"""``ase-deepspin compress``."""

from __future__ import annotations

HELP = "tabulate the embedding nets of a model (faster inference)"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model file or shipped model name")
    parser.add_argument("out")
    parser.add_argument("--tolerance", type=float, default=1e-8, help="largest table error, in units of G")
    parser.add_argument("--min-distance", type=float, default=0.5,
                        help="Å; neighbours closer than this are evaluated by the nets, not the tables")


def run(args):
    from ..io import load_model, resolve_model_path, save_model
    from ..model import compress_model
    from .info import print_tables

    model = compress_model(load_model(resolve_model_path(args.model)), tolerance=args.tolerance,
                           min_distance=args.min_distance)
    save_model(model, args.out)
    print(f"compressed model written to {args.out}")
    print_tables(model)
