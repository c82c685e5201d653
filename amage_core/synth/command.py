"""``amage synth``: write a synthetic cohort (flags override :class:`~amage_core.config.SynthConfig`)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["camcan-like", "oasis3-like"], default="camcan-like",
                        help="age range, TR, scan length and scanner contrast")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the BIDS dataset into")
    parser.add_argument("--n-subjects", type=int, help="participants (default: SynthConfig.n_subjects)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--voxel-size", type=float, help="T1 voxel size in mm (default 6; paper scale 2)")
    parser.add_argument("--n-bold-nifti", type=int, help="participants who also get voxelwise BOLD")
    parser.add_argument("--atlas", help="network-labelled atlas of the generative model (dosenbach160, seitzman300)")
    parser.add_argument("--extra-atlas", action="append", dest="extra_atlases", metavar="ATLAS",
                        help="also write XCP-D time series for this atlas (repeatable)")
    parser.add_argument("--n-volumes", type=int, help="volumes per scan (default: the preset's)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic cohort in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    """The :class:`SynthConfig` the flags describe (unset flags keep the dataclass defaults)."""
    from amage_core.config import SynthConfig

    overrides = {"preset": args.preset}
    for key in ("n_subjects", "seed", "voxel_size", "n_bold_nifti", "atlas", "extra_atlases", "n_volumes"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    cfg = SynthConfig(**overrides)
    if args.n_bold_nifti is None and cfg.n_bold_nifti > cfg.n_subjects:
        cfg.n_bold_nifti = cfg.n_subjects
    return cfg


def run(args: argparse.Namespace) -> int:
    from amage_core.synth.cohort import generate_cohort

    cfg = config_from_args(args)
    out = generate_cohort(cfg, args.out, n_jobs=args.n_jobs, progress=not args.quiet, overwrite=args.overwrite)
    from amage_core.synth.cohort import load_truth

    truth = load_truth(out).oracle
    oracle, fl = truth["population"], truth["floor"]
    print(f"{out}: {cfg.n_subjects} participants ({cfg.preset}, seed {cfg.seed}); MAE in years, reachable "
          f"floor: sMRI {fl['smri']['mae']:.2f}, fMRI {fl['fmri']['mae']:.2f}, both {fl['both']['mae']:.2f}; "
          f"oracle (unreachable): sMRI {oracle['smri']['mae']:.2f}, fMRI {oracle['fmri']['mae']:.2f}, "
          f"both {oracle['both']['mae']:.2f}")
    return 0
