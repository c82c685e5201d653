"""Where and with what a benchmark ran: the machine, library versions, the commit, the book's timings."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from amage_core import io

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


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine slows every measurement."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


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


def book_timings(book_dir: Path = REPO / "book") -> dict[str, Any]:
    """``demo_seconds``: the sum of the chapters' latest execution times (``amage book`` writes them
    to ``<book_dir>/chapters/_timings.json``); ``None`` with a note when the book was never run."""
    path = Path(book_dir) / "chapters" / "_timings.json"
    base = {"aim_seconds": BOOK_AIM_SECONDS, "limit_seconds": BOOK_LIMIT_SECONDS, "source": str(path)}
    if not path.is_file():
        return {**base, "demo_seconds": None, "chapters": {},
                "note": f"{path} not found: run `make book` (or `amage book --profile demo`) first"}
    chapters = {k: round(float(v), 1) for k, v in sorted(io.read_json(path).items())}
    total = round(sum(chapters.values()), 1)
    return {**base, "demo_seconds": total, "chapters": chapters,
            "within_aim": total <= BOOK_AIM_SECONDS, "within_limit": total <= BOOK_LIMIT_SECONDS,
            "note": "sum of each chapter's latest papermill execution (chapters reused by a later "
                    "run keep their earlier time); installation and the HTML build are not included"}
