"""`amage prep`: parse arguments, call :func:`amage_core.data.prepare.prepare_cohort`.

Light imports only at module level, so that ``amage --help`` stays fast.
"""
from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=["camcan", "oasis3", "bids", "abide"],
                        help="source layout (see amage_core/data/sources)")
    parser.add_argument("--root", required=True, help="the dataset's root folder")
    parser.add_argument("--derivatives", default=None, help="fMRIPrep/XCP-D derivatives (default <root>/derivatives)")
    parser.add_argument("--out", required=True, help="prepared cohort folder")
    parser.add_argument("--profile", default="demo", help="profile giving PrepConfig defaults (demo, paper, PATH)")
    parser.add_argument("--atlas", default=None, help="atlas name or regions TSV path")
    parser.add_argument("--n-jobs", type=int, default=None, help="parallel participants (profile: runtime.n_jobs)")
    parser.add_argument("--strict", action="store_true", help="stop at the first problem")
    parser.add_argument("--rebuild", action="store_true", help="replace a cohort prepared with another configuration")
    parser.add_argument("--modalities", default=None, help="comma list of fmri,smri,table (default: all the source has)")
    parser.add_argument("--table", default=None, help="bids: structural table TSV keyed by participant_id")
    parser.add_argument("--freesurfer", default=None, help="abide: FreeSurfer feature table (FILE_ID)")
    parser.add_argument("--cognitively-normal", action="store_true", help="oasis3: CDR 0 / NORMCOG sessions only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="prep_set",
                        help="override a PrepConfig field (YAML value), e.g. min_volumes=80")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="any other source option (YAML value), e.g. quality_checked=true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _pairs(items: list[str], flag: str) -> dict[str, Any]:
    import yaml

    from amage_core.config import read_yaml

    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[k.strip()] = read_yaml(v)
        except yaml.YAMLError as exc:
            raise ValueError(f"{flag} {item!r}: the value is not valid YAML "
                             f"({getattr(exc, 'problem', None) or exc})") from exc
    return out


def run(args: argparse.Namespace) -> int:
    from amage_core.config import load_profile, replace

    cfg = load_profile(args.profile).prep
    changes: dict[str, Any] = {}
    if args.atlas:
        changes["atlas"] = args.atlas
    if args.n_jobs is not None:
        changes["n_jobs"] = args.n_jobs
    if args.strict:
        changes["strict"] = True
    if args.modalities:
        changes["modalities"] = [m.strip() for m in args.modalities.split(",") if m.strip()]
    changes.update(_pairs(args.prep_set, "--set"))
    cfg = replace(cfg, **changes)
    options = _pairs(args.option, "--option")
    if args.table:
        options["table"] = args.table
    if args.freesurfer:
        options["freesurfer"] = args.freesurfer
    if args.cognitively_normal:
        options["cognitively_normal"] = True
    from amage_core.data.prepare import prepare_cohort

    cohort = prepare_cohort(args.dataset, args.root, args.out, cfg, derivatives=args.derivatives,
                            progress=not args.quiet, rebuild=args.rebuild, **options)
    print(f"{args.out}: {cohort.n} participants, modalities {sorted(cohort.modalities)}")
    return 0
