"""``amage bench``: parse the arguments, run the benchmark, write FILE.json and FILE.md."""
from __future__ import annotations

import argparse
from pathlib import Path

from amage_core.book import BOOK_DIR

BOOK_PAGE = BOOK_DIR / "benchmarks" / "latest.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from amage_core.bench.suite import SECTIONS

    parser.add_argument("--out", type=Path, required=True, help="results FILE.json (FILE.md is written beside it)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (a couple of minutes): checks that everything runs, not a measurement")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the accuracy models train; cuda also times the paper profile on the GPU")
    parser.add_argument("--profile", default="demo", help="profile the benchmark derives from (default: demo)")
    parser.add_argument("--workdir", type=lambda p: str(Path(p).expanduser().resolve()),
                        help="where cohorts and runs go (default: the profile's workdir)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--models", nargs="+", metavar="MODEL",
                        help="cross-validate only these models on the camcan-like cohort, in this order "
                             "(default: every deep model and baseline; amagenet is always among them)")
    parser.add_argument("--book-page", type=Path, default=None,
                        help="also write the Markdown here (full runs default to book/benchmarks/latest.md; 'none': nowhere)")
    parser.add_argument("--book-dir", type=Path, default=BOOK_DIR,
                        help="book folder whose chapters/_timings.json gives the demo book's time (default: book/)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: re-write FILE.md (and the book's page) from an existing FILE.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from amage_core.bench.suite import run_benchmark, write
    from amage_core.io import read_json

    if args.out.suffix != ".json":
        raise ValueError(f"--out must name a .json file, got {args.out}")
    page = args.book_page if args.book_page is not None else (None if args.quick else BOOK_PAGE)
    if page is not None and str(page) == "none":
        page = None
    if args.render:
        results = read_json(args.out)
    else:
        results = run_benchmark(args.profile, args.out, quick=args.quick, device=args.device, workdir=args.workdir,
                                only=args.only, models=args.models, progress=not args.no_progress,
                                book_dir=args.book_dir)
    md = write(results, args.out, page, results_too=not args.render)
    wrote = md if args.render else f"{args.out} and {md}"
    print(f"wrote {wrote}" + (f" (and {page})" if page else ""))
    return 0
