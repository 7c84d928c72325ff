"""``ase-deepspin test``."""

from __future__ import annotations

HELP = "RMSE/MAE of a model on labelled data, with parity plots"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model file or shipped model name")
    parser.add_argument("data", nargs="+", help="DeePMD-kit npy systems (or folders of them) or extxyz files")
    parser.add_argument("--validation-of", type=int, default=None, metavar="N",
                        help="only the N frames a training run with the same split held out")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--relative-energy", nargs="+", default=[], metavar="SYSTEM",
                        help="systems whose energies have another code's zero (as training's relative_energy names "
                             "them): compared after removing their mean difference per atom")
    parser.add_argument("--plot", default="parity.png")
    parser.add_argument("--no-plot", action="store_true")


def run(args):
    from ..training.evaluate import accuracy_report

    table = accuracy_report(args.model, args.data, n_validation=args.validation_of, split_seed=args.split_seed,
                       plot=None if args.no_plot else args.plot, relative_energy=args.relative_energy)
    print(table)
