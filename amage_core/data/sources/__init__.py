"""Sources: a root folder -> participant records (see ``base.SourceScan``).

``scan_source(name, root, derivatives, cfg, **options)`` dispatches to ``<name>.scan``; each
module's docstring gives its exact on-disk layout and options.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from amage_core.config import PrepConfig
from amage_core.data.sources.base import ParticipantRecord, SourceScan

SOURCES = ("camcan", "oasis3", "bids", "abide")

__all__ = ["SOURCES", "ParticipantRecord", "SourceScan", "scan_source"]


def scan_source(name: str, root: Path, derivatives: Path | None, cfg: PrepConfig,
                **options) -> SourceScan:
    """Find every participant of source ``name`` under ``root``."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}: use one of {list(SOURCES)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {name} root folder not found")
    module = importlib.import_module(f"amage_core.data.sources.{name}")
    try:
        return module.scan(root, Path(derivatives) if derivatives else None, cfg, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ValueError(f"source {name}: {exc} (see amage_core.data.sources.{name})") from None
        raise
