"""``ase-deepspin train``."""

from __future__ import annotations

HELP = "train a model from a YAML config"


def add_arguments(parser) -> None:
    parser.add_argument("config")
    parser.add_argument("--max-time", type=float, default=None, help="wall-time budget in seconds")
    parser.add_argument("--resume", default=None, help="checkpoint to continue from")
    parser.add_argument("--init-model", default=None, metavar="MODEL",
                        help="start from this model file's weights (same architecture; a fresh learning-rate schedule)")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--force", action="store_true", help="replace an earlier run's model and checkpoint")
    parser.add_argument("--ensemble", type=int, default=None, metavar="K",
                        help="train K members with different seeds (same data) into OUTPUT_DIR/member_k")


def run(args):
    from ..training.config import TrainConfig
    from ..training.train import train, train_ensemble

    cfg = TrainConfig.from_yaml(args.config)
    if args.max_time is not None:
        cfg.max_time = args.max_time
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.init_model:
        cfg.init_model = args.init_model
    if args.ensemble is not None:
        if args.resume:
            raise ValueError("--resume continues one run; an interrupted --ensemble continues by running it again "
                             "(finished members are kept)")
        paths = train_ensemble(cfg, args.ensemble, overwrite=args.force)
        print(f"committee of {len(paths)} models: {' '.join(map(str, paths))}")
        return
    path = train(cfg, resume=args.resume, overwrite=args.force)
    print(f"model written to {path}")
