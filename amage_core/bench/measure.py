"""Run one measurement in a fresh process and record its wall time and peak memory.

:func:`measured` starts ``python -m amage_core.bench.worker TASK ARGS.json RESULT.json`` and polls
the resident memory of the whole process tree (the worker and its joblib/loky children) with
psutil every 50 ms; the peak of that sum is the task's ``peak_mb``. The worker also reports its own
``getrusage`` maximum (exact for the main process, blind to children that were never waited for), and
the larger of the two is kept. A fresh process per measurement means one task's memory never
inflates another's. CPU time beside wall time shows how much other work on the machine slowed it.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amage_core import io

POLL_SECONDS = 0.05
MB = 1024 * 1024


@dataclass
class Measured:
    """What one worker process returned and cost."""

    result: dict[str, Any]   # the task's own figures (seconds of the timed part, counts, ...)
    wall_seconds: float      # the whole process: start-up, imports, the task
    cpu_seconds: float       # user + system CPU time of the process and its waited-for children
    peak_mb: float           # peak resident memory of the process tree


def tree_rss(proc) -> int:
    """Resident bytes of ``proc`` (a ``psutil.Process``) and all its descendants now."""
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in members:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def measured(task: str, args: dict[str, Any], timeout: float | None = None) -> Measured:
    """Run ``task`` of :mod:`amage_core.bench.worker` with ``args`` in a fresh Python process."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="amage-bench-") as tmp:
        args_path, result_path = Path(tmp) / "args.json", Path(tmp) / "result.json"
        io.write_json(args_path, args)
        cmd = [sys.executable, "-m", "amage_core.bench.worker", task, str(args_path), str(result_path)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        proc, peak = psutil.Process(child.pid), 0
        log_path = Path(tmp) / "log.txt"
        with open(log_path, "w", encoding="utf-8") as log:
            reader = threading.Thread(target=lambda: log.write(child.stdout.read()), daemon=True)
            reader.start()
            while child.poll() is None:
                peak = max(peak, tree_rss(proc))
                if timeout is not None and time.perf_counter() - t0 > timeout:
                    child.kill()
                    break
                time.sleep(POLL_SECONDS)
            reader.join()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if child.returncode != 0 or not result_path.is_file():
            tail = log_path.read_text(encoding="utf-8")[-3000:]
            raise RuntimeError(f"benchmark task {task!r} failed (exit {child.returncode}):\n{tail}")
        result = io.read_json(result_path)
    own = float(result.pop("_self_maxrss_mb", 0.0))
    return Measured(result, wall, cpu, round(max(peak / MB, own), 1))
