"""``amage train``: cross-validate a model variant or a baseline on a prepared cohort.

Examples::

    amage train --data data/camcan --model amagenet --profile demo --out runs/amagenet
    amage train --data data/camcan --model ridge-fc --profile demo --out runs/ridge-fc
    amage train --data data/camcan --model amagenet --out runs/leaky --protocol released-code
    amage train --data data/camcan --test-data data/oasis3 --model amagenet --out runs/transfer
    amage train ... --where sex=M --where site=NYU   # a subset of the participants
    amage train ... --fold 2          # one fold in this process (others elsewhere), then --resume
    torchrun --nproc_per_node=2 -m amage_core train ...   # data-parallel over 2 GPUs/processes
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

BASELINE_NAMES = ("ridge-fc", "svr-fc", "brainage-gpr", "ridge-table", "stacking")
# the names of amage_core.models.VARIANTS, written out so that --help needs no torch import
# (tests/reliability/test_rel_trust.py checks that the two lists agree)
VARIANT_NAMES = ("amagenet", "released-code", "fmri", "smri", "sfcn", "tabular", "gcn", "flat-gat", "no-gate",
                 "no-xattn", "concat")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="prepared cohort folder (amage prep)")
    parser.add_argument("--model", required=True,
                        help=f"a model variant: {', '.join(VARIANT_NAMES)}; or a baseline: {', '.join(BASELINE_NAMES)}")
    parser.add_argument("--profile", default="demo", help="demo, paper or a profile YAML path (default: demo)")
    parser.add_argument("--out", required=True, help="run directory to write (a fusion variant also "
                        "trains its pretrained branches in OUT-branches/)")
    parser.add_argument("--folds", type=int, help="number of cross-validation folds (profile: train.folds)")
    parser.add_argument("--seed", type=int, help="random seed (profile: train.seed)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (profile: train.epochs)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (profile: runtime.device)")
    parser.add_argument("--protocol", choices=("nested", "released-code"),
                        help="nested (leak-free, default) or the authors' released-code protocol")
    parser.add_argument("--test-data", help="second prepared cohort: each fold model of the cross-validation "
                        "on --data predicts all of it; the prediction is their mean")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                        help="keep the participants whose participants.tsv column equals the value "
                             "(repeatable: all must hold), e.g. --where sex=M; applies to --data and --test-data")
    parser.add_argument("--fold", action="append", help="run only this fold (repeatable); the run is "
                        "assembled when every fold is done")
    parser.add_argument("--resume", action="store_true",
                        help="keep finished folds and continue interrupted fits from their checkpoints")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from amage_core.baselines import run_baseline
    from amage_core.config import load_profile, replace
    from amage_core.data.cohort import load_cohort
    from amage_core.models import VARIANTS
    from amage_core.train import distributed
    from amage_core.data.cohort import select
    from amage_core.train.cv import cross_validate, fusion_branches

    if args.model not in VARIANTS and args.model not in BASELINE_NAMES:
        raise ValueError(f"unknown --model {args.model!r}: variants {sorted(VARIANTS)}, "
                         f"baselines {list(BASELINE_NAMES)}")
    profile = load_profile(args.profile)
    overrides = {k: v for k, v in (("folds", args.folds), ("seed", args.seed), ("epochs", args.epochs),
                                   ("device", args.device), ("protocol", args.protocol)) if v is not None}
    train_cfg = replace(profile.train, **overrides)
    where = parse_where(args.where)
    out = Path(args.out).resolve()
    for folder in filter(None, (args.data, args.test_data)):
        data_dir = Path(folder).resolve()
        if out == data_dir or data_dir in out.parents:
            raise ValueError(f"--out {args.out} is inside the prepared cohort {folder}: runs and cohort "
                             "files would mix; write the run elsewhere")
    cohort = load_cohort(args.data)
    test_cohort = load_cohort(args.test_data) if args.test_data else None
    if where:
        cohort = select(cohort, where)
        test_cohort = select(test_cohort, where) if test_cohort is not None else None
    ctx = distributed.init_from_env()
    try:
        if args.model in BASELINE_NAMES:
            result = run_baseline(args.model, cohort, train_cfg, args.out, test_cohort=test_cohort,
                                  resume=args.resume, progress=not args.quiet, folds=args.fold)
        else:
            model_cfg = replace(profile.model, variant=args.model)
            branches = fusion_branches(cohort, model_cfg, train_cfg, profile.graph,
                                       out.parent / f"{out.name}-branches", not args.quiet)
            result = cross_validate(cohort, model_cfg, train_cfg, profile.graph, args.out,
                                    test_cohort=test_cohort, resume=args.resume,
                                    progress=not args.quiet, folds=args.fold, pretrained=branches)
    finally:
        distributed.shutdown()
    if not ctx.is_main:
        return 0
    if not result.complete:
        print(f"{result.path}: fold(s) {', '.join(args.fold or [])} done; run the remaining folds "
              "(or the same command without --fold, with --resume) to assemble the run")
        return 0
    m = result.metrics["uncorrected"]["pooled"]      # accuracy is uncorrected (see evaluate.metrics)
    print(f"{result.path}{' (reused)' if result.reused else ''}: n={m['n']}  MAE {m['mae']:.2f} "
          f"RMSE {m['rmse']:.2f} r {_fmt(m['pearson_r'])} r(gap, age) {_fmt(m['gap_age_r'])}", file=sys.stdout)
    return 0


def parse_where(items: list[str]) -> dict[str, str]:
    """``["sex=M", "site=NYU"]`` -> ``{"sex": "M", "site": "NYU"}``; a malformed or repeated
    column is a ``ValueError`` naming it."""
    where: dict[str, str] = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column.strip() or not value.strip():
            raise ValueError(f"--where {item!r}: expected COLUMN=VALUE, e.g. sex=M")
        if column.strip() in where:
            raise ValueError(f"--where: column {column.strip()!r} given twice")
        where[column.strip()] = value.strip()
    return where


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
