"""Where and with what a benchmark ran: the machine, library versions, the commit, the book's timings."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from amage_core import io
from amage_core.book import find_chapters, load_average

REPO = Path(__file__).resolve().parents[2]
BOOK_AIM_SECONDS, BOOK_LIMIT_SECONDS = 600, 900     # issue 9: demo book under 10 min, 15 at most


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU model and cores (logical, physical, usable by this process), RAM, GPU, OS, threads."""
    import psutil
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "count": torch.cuda.device_count(),
               "memory_gb": round(props.total_memory / 2**30, 1)}
    return {
        "cpu": cpu_model(), "cores_logical": os.cpu_count(), "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": usable, "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "gpu": gpu,
        "os": platform.platform(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(), "load_average_start": load_average(),
    }


def describe(m: dict[str, Any]) -> str:
    """One line naming the machine, for tables and the README."""
    gpu = f", GPU {m['gpu']['name']}" if m.get("gpu") else ", no GPU"
    load = m.get("load_average_start")
    busy = f"; load average at the start {load[0]:g} (1 min)" if load else ""
    return (f"{m['cpu']}, {m['cores_usable']} usable cores ({m['cores_logical']} logical), "
            f"{m['ram_gb']:g} GB RAM{gpu}, {m['torch_threads']} torch threads{busy}")


def versions() -> dict[str, str]:
    from amage_core.train.rundir import library_versions

    out = library_versions()
    for name in ("nibabel", "joblib", "psutil"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            continue
    return out


def git_state() -> dict[str, Any]:
    """The commit and whether the working tree had uncommitted changes (``None`` outside git)."""
    from amage_core.train.rundir import git_commit

    commit = git_commit()
    dirty = None
    if commit:
        try:
            out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                 capture_output=True, text=True, timeout=10, check=True)
            dirty = bool(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return {"commit": commit, "dirty": dirty}


def book_timings(book_dir: Path = REPO / "book", profile: str = "demo") -> dict[str, Any]:
    """The demo book's time from ``<book_dir>/chapters/_timings.json`` (written by ``amage book``).

    ``demo_seconds`` is the wall time of the last run when it executed every chapter and built the
    HTML (after installation: cohort generation, preparation and training are inside the chapters);
    otherwise the sum of each chapter's latest execution, said so in ``note``. ``None`` with a note
    when the book was never run with ``profile``."""
    path = Path(book_dir) / "chapters" / "_timings.json"
    base = {"aim_seconds": BOOK_AIM_SECONDS, "limit_seconds": BOOK_LIMIT_SECONDS, "source": str(path),
            "profile": profile}
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
            "within_aim": total <= BOOK_AIM_SECONDS, "within_limit": total <= BOOK_LIMIT_SECONDS,
            "note": note}
