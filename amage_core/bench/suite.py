"""One benchmark run: every section, where and with what it ran, then ``FILE.json`` and ``FILE.md``.

Sections (``only`` selects some): ``accuracy`` (:mod:`~amage_core.bench.accuracy`), ``speed``
(throughput, memory, scaling: :mod:`~amage_core.bench.speed`), ``gpu`` (``--device cuda``), ``book``
(the demo book's chapter timings, :func:`book_timings`) and ``abide`` (:mod:`~amage_core.bench.abide`).
A section not run is recorded as skipped, with the reason. The record of the run: :func:`machine`,
the library versions, the commit (:func:`git_state`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from amage_core import io
from amage_core.bench.settings import BASELINE_MODELS, DEEP_MODELS, FULL, QUICK, accuracy_profile
from amage_core.book import BOOK_DIR, REPO, find_chapters, load_average
from amage_core.config import load_profile, replace, to_dict

SECTIONS = ("accuracy", "speed", "gpu", "book", "abide")
FORMAT_VERSION = 1
BOOK_AIM_SECONDS, BOOK_LIMIT_SECONDS = 600, 900     # issue 9: demo book under 10 min, 15 at most


def machine() -> dict[str, Any]:
    """CPU model and cores (logical, physical, usable by this process), RAM, GPU, OS, threads."""
    import psutil
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text(encoding="utf-8", errors="replace") if cpuinfo.is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.lower().startswith("model name")]
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "count": torch.cuda.device_count(), "memory_gb": round(props.total_memory / 2**30, 1)}
    return {
        "cpu": names[0] if names else platform.processor() or platform.machine(), "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "gpu": gpu, "os": platform.platform(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
        "load_average_start": load_average(),
    }


def git_state() -> dict[str, Any]:
    """The commit and whether the working tree had uncommitted changes (``None`` outside git)."""
    from amage_core.train.rundir import git_commit

    commit, dirty = git_commit(), None
    if commit:
        try:
            out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                 capture_output=True, text=True, timeout=10, check=True)
            dirty = bool(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return {"commit": commit, "dirty": dirty}


def book_timings(book_dir: Path = BOOK_DIR, profile: str = "demo") -> dict[str, Any]:
    """The demo book's time from ``<book_dir>/chapters/_timings.json`` (written by ``amage book``).

    ``demo_seconds`` is the wall time of the last run when it executed every chapter and built the
    HTML (after installation: cohort generation, preparation and training are inside the chapters);
    otherwise the sum of each chapter's latest execution, said so in ``note``. ``None`` with a note
    when the book was never run with ``profile``."""
    path = Path(book_dir) / "chapters" / "_timings.json"
    base = {"aim_seconds": BOOK_AIM_SECONDS, "limit_seconds": BOOK_LIMIT_SECONDS, "source": str(path), "profile": profile}
    entry = (io.read_json(path).get("profiles", {}) if path.is_file() else {}).get(profile)
    if not entry or not entry.get("chapters"):
        return {**base, "demo_seconds": None, "chapters": {},
                "note": f"no {profile} timings in {path}: run `make book` (or `amage book --profile {profile}`) first"}
    every = {nb.stem for nb in find_chapters()}     # a chapter renamed or removed since is left out
    chapters = {k: round(float(v), 1) for k, v in sorted(entry["chapters"].items()) if k in every}
    last = entry.get("last_run") or {}
    whole = set(last.get("executed", [])) >= every and last.get("html_seconds") is not None
    if whole:
        total = round(float(last["wall_seconds"]), 1)
        chapters = {k: chapters[k] for k in last["executed"] if k in chapters}
        note = (f"one `amage book` run that executed every chapter and built the HTML "
                f"({last['html_seconds']:.0f} s of it), finished {last['finished']}, load average at "
                f"its end {last.get('load_average_end')}; installation not included")
    else:
        total = round(sum(chapters.values()), 1)
        note = ("sum of each chapter's latest papermill execution (no single run executed them all: "
                "chapters reused by a later run keep their earlier time); the HTML build is not included")
    return {**base, "demo_seconds": total, "chapters": chapters, "whole_run": whole,
            "within_aim": total <= BOOK_AIM_SECONDS, "within_limit": total <= BOOK_LIMIT_SECONDS, "note": note}


def run_benchmark(profile_ref: str, out: Path, quick: bool = False, device: str = "cpu",
                  workdir: str | None = None, only: list[str] | None = None, models: list[str] | None = None,
                  progress: bool = True, book_dir: Path = BOOK_DIR) -> dict[str, Any]:
    """Run the selected sections and return the results (see the module docstring). ``models``:
    the models cross-validated by the accuracy section (default: the settings'; AMAge-Net is added
    first when missing, since the verdict is about it)."""
    import torch

    from amage_core import workflow as wf
    from amage_core.bench.abide import abide_benchmark
    from amage_core.bench.accuracy import accuracy
    from amage_core.bench.speed import gpu, speed
    from amage_core.train.rundir import library_versions

    s = QUICK if quick else FULL
    unknown = set(models or ()) - set(DEEP_MODELS + BASELINE_MODELS)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; choose among {sorted(DEEP_MODELS + BASELINE_MODELS)}")
    if models:
        s = dataclasses.replace(s, models=tuple(dict.fromkeys(["amagenet", *models])))
    chosen = set(only or SECTIONS)
    if chosen - set(SECTIONS):
        raise ValueError(f"unknown section(s) {sorted(chosen - set(SECTIONS))}; choose among {list(SECTIONS)}")
    base = load_profile(profile_ref)
    profile = accuracy_profile(base, s, workdir)
    root = wf.workdir(profile)
    scratch = root / "bench-scratch" / s.mode
    t0 = time.perf_counter()
    git = git_state()
    results: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "mode": s.mode, "device": device,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "versions": {**library_versions(), **{n: importlib.metadata.version(n) for n in ("nibabel", "joblib", "psutil")}},
        "git": git, "seeds": {"train": profile.train.seed, "camcan": profile.cohorts["camcan"].synth.seed,
                              "oasis3": profile.cohorts["oasis3"].synth.seed, "bench": s.seed},
        "settings": {"profile": profile_ref, "workdir": str(root), "bench": to_dict(s)},
        "notes": [], "git_commit": git["commit"],
    }
    skipped = {"skipped": "not selected (--only)"}
    try:
        if "speed" in chosen:
            shutil.rmtree(scratch, ignore_errors=True)
            sp = speed(profile, s, scratch)
            results.update(throughput=sp["throughput"], memory=sp["memory"], scaling=sp["scaling"],
                           speed_details={**sp["details"], "processes": sp["processes"]})
            results["notes"] += sp["notes"]
        else:
            results.update(throughput={}, memory={}, scaling=skipped)
        results["gpu"] = gpu(s, device) if "gpu" in chosen else skipped
        if "accuracy" in chosen:
            train_device = device
            if device == "cuda" and not torch.cuda.is_available():
                train_device = "cpu"
                results["notes"].append("--device cuda without a usable GPU: the accuracy models trained on the CPU")
            previous = io.read_json(out) if Path(out).is_file() else None
            results["accuracy"] = accuracy(profile, s, train_device, progress, previous)
        else:
            results["accuracy"] = {"models": {}, "oracle_mae": None, **skipped}
        results["book"] = book_timings(book_dir) if "book" in chosen else {"demo_seconds": None, **skipped}
        if "abide" not in chosen or quick:
            results["abide"] = {"skipped": "not run with --quick"} if "abide" in chosen else skipped
        else:       # the user's own profile, so the ABIDE chapter's runs are reused
            own = base if workdir is None else replace(base, workdir=workdir)
            results["abide"] = abide_benchmark(own, Path(out).with_name(f"{Path(out).stem}_abide.json"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"]["load_average_end"] = load_average()
    return results


def write(results: dict[str, Any], out: Path, book_page: Path | None = None, results_too: bool = True) -> Path:
    """``out`` (JSON, unless ``results_too`` is false) and the Markdown beside it (same name, ``.md``);
    optionally the book's page (without the top heading: the page has its own)."""
    from amage_core.bench.markdown import render

    out = Path(out)
    if results_too:
        io.write_json(out, results)
    md = out.with_suffix(".md")
    io.write_text(md, render(results))
    if book_page is not None:
        io.write_text(book_page, render(results, title=False))
    return md
