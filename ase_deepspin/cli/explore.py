"""``ase-deepspin explore``."""

from __future__ import annotations

HELP = "active learning: explore with a committee, label candidates, retrain"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML of ase_deepspin.training.active.ExploreConfig")
    parser.add_argument("--workdir", default="active", help="folder of the loop (rerun to continue)")


def run(args):
    from ..training.active import ExploreConfig, final_committee, load_oracle, run_active_learning

    cfg = ExploreConfig.from_yaml(args.config)
    if cfg.oracle is None:
        raise ValueError(f"{args.config} names no oracle ('oracle: gpaw' or 'oracle: module:function' returning an ASE calculator)")
    run_active_learning(cfg, load_oracle(cfg.oracle, cfg.oracle_settings), args.workdir)
    paths = final_committee(cfg, args.workdir)
    print(f"committee trained on every label: {' '.join(map(str, paths))}; summary in {args.workdir}/summary.json")
