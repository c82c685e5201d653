"""`amage` command line: thin wrappers that parse arguments and call the library.

Each subcommand lives in a ``command.py`` of the package that owns the work (``synth``, ``data``,
``train``, ``bench``; ``amage book`` in :mod:`amage_core.book`); that module provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``amage --help`` is fast.

The library logs its progress messages (``logging.getLogger(__name__)``) and configures no handler;
the command line shows them (:func:`configure_logging`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "book": ("amage_core.book", "run the chapters with papermill, then build the book"),
    "synth": ("amage_core.synth.command", "generate a synthetic lifespan cohort (BIDS + fMRIPrep/XCP-D) with ground truth"),
    "prep": ("amage_core.data.command", "prepare a cohort (camcan, oasis3, bids, abide) for training"),
    "train": ("amage_core.train.command", "cross-validate a model variant or a baseline on a prepared cohort"),
    "bench": ("amage_core.bench.command", "benchmark accuracy (vs oracle and baselines), speed and memory"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amage",
        description="AMAge-Net reproduction: synthetic cohorts, data preparation, training, the book.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def configure_logging() -> None:
    """The library's messages (INFO and up from the ``amage_core`` loggers: ``amage prep``'s QC summary,
    a cohort that is up to date or prepared again) on stderr as plain lines; other libraries' loggers
    show warnings only (papermill, for one, logs every notebook it runs at INFO)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("amage_core").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; re-run the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # Expected failures (bad input, missing or unwritable files, a full disk, failed chapters)
        # end with one clear line.
        print(f"amage {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
