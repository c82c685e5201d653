"""One benchmark run: every section, then ``FILE.json`` and ``FILE.md`` (and the book's page).

Sections (``only`` selects some): ``accuracy`` (:mod:`~amage_core.bench.accuracy`), ``speed``
(throughput, memory, scaling: :mod:`~amage_core.bench.speed`), ``gpu`` (``--device cuda``), ``book``
(the demo book's chapter timings) and ``abide`` (:mod:`~amage_core.bench.abide`). A section not run
is recorded as skipped, with the reason.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from amage_core import io
from amage_core.bench import machine as mach
from amage_core.bench.settings import BASELINE_MODELS, DEEP_MODELS, accuracy_profile, settings
from amage_core.config import Profile, load_profile, replace, to_dict

SECTIONS = ("accuracy", "speed", "gpu", "book", "abide")
FORMAT_VERSION = 1
logger = logging.getLogger(__name__)


def abide(profile: Profile, out: Path, quick: bool) -> dict[str, Any]:
    """ABIDE figures from :func:`amage_core.bench.abide.abide_benchmark` (``out``: its JSON file).
    ``profile`` is the user's own, so the ABIDE chapter's runs are reused."""
    from amage_core.bench.abide import abide_benchmark

    if quick:
        return {"skipped": "not run with --quick"}
    return abide_benchmark(profile, out)


def run_benchmark(profile_ref: str, out: Path, quick: bool = False, device: str = "cpu",
                  workdir: str | None = None, only: list[str] | None = None,
                  models: list[str] | None = None, keep_scratch: bool = False,
                  progress: bool = True, book_dir: Path = mach.REPO / "book", log=logger.info) -> dict[str, Any]:
    """Run the selected sections and return the results (see the module docstring). ``models``:
    the models cross-validated by the accuracy section (default: the settings'; AMAge-Net is added
    first when missing, since the verdict is about it)."""
    import dataclasses

    import torch

    from amage_core.bench.accuracy import accuracy
    from amage_core.bench.speed import gpu, speed

    s = settings(quick)
    if models:
        known = set(DEEP_MODELS + BASELINE_MODELS)
        if set(models) - known:
            raise ValueError(f"unknown model(s) {sorted(set(models) - known)}; choose among {sorted(known)}")
        s = dataclasses.replace(s, models=tuple(dict.fromkeys(["amagenet", *models])))
    chosen = set(only or SECTIONS)
    unknown = chosen - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; choose among {list(SECTIONS)}")
    base = load_profile(profile_ref)
    profile = accuracy_profile(base, s, workdir)
    root = Path(profile.workdir).expanduser().resolve()
    scratch = root / "bench-scratch" / s.mode
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "mode": s.mode, "device": device,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": mach.machine(), "versions": mach.versions(), "git": mach.git_state(),
        "seeds": {"train": profile.train.seed, "camcan": profile.cohorts["camcan"].synth.seed,
                  "oasis3": profile.cohorts["oasis3"].synth.seed, "bench": s.seed},
        "settings": {"profile": profile_ref, "workdir": str(root), "bench": to_dict(s)},
        "notes": [],
    }
    results["git_commit"] = results["git"]["commit"]
    skipped = {name: {"skipped": "not selected (--only)"} for name in SECTIONS if name not in chosen}
    try:
        if "speed" in chosen:
            shutil.rmtree(scratch, ignore_errors=True)
            sp = speed(profile, s, scratch, log)
            results.update(throughput=sp["throughput"], memory=sp["memory"], scaling=sp["scaling"],
                           speed_details={**sp["details"], "processes": sp["processes"]})
            results["notes"] += sp["notes"]
        else:
            results.update(throughput={}, memory={}, scaling=skipped["speed"])
        results["gpu"] = gpu(s, device) if "gpu" in chosen else skipped["gpu"]
        if "accuracy" in chosen:
            train_device = device
            if device == "cuda" and not torch.cuda.is_available():
                train_device = "cpu"
                results["notes"].append("--device cuda without a usable GPU: the accuracy models trained on the CPU")
            previous = io.read_json(out) if Path(out).is_file() else None
            results["accuracy"] = accuracy(profile, s, train_device, progress, log, previous)
        else:
            results["accuracy"] = {"models": {}, "oracle_mae": None, **skipped["accuracy"]}
        results["book"] = mach.book_timings(book_dir) if "book" in chosen else {"demo_seconds": None, **skipped["book"]}
        own = base if workdir is None else replace(base, workdir=workdir)
        results["abide"] = (abide(own, out.with_name(f"{out.stem}_abide.json"), quick) if "abide" in chosen
                            else skipped["abide"])
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    results["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"]["load_average_end"] = mach.load_average()
    return results


def write(results: dict[str, Any], out: Path, book_page: Path | None = None, results_too: bool = True) -> Path:
    """``out`` (JSON, unless ``results_too`` is false) and the Markdown beside it (same name, ``.md``);
    optionally the book's page."""
    from amage_core.bench.markdown import render

    out = Path(out)
    if results_too:
        io.write_json(out, results)
    text = render(results)
    md = out.with_suffix(".md")
    io.write_text(md, text)
    if book_page is not None:
        io.write_text(book_page, render(results, title=False))
    return md
