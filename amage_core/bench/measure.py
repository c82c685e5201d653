"""Run one benchmark task in a fresh process and record its wall time, CPU time and peak memory.

:func:`measured` starts ``python -m amage_core.bench.measure TASK ARGS.json RESULT.json`` (:func:`main`
runs ``TASK`` of :data:`amage_core.bench.tasks.TASKS`) and polls the resident memory of the whole
process tree (the worker and its joblib/loky children) with psutil every 50 ms; the peak of that sum
is ``peak_mb``. The worker also reports its own ``getrusage`` maximum (exact for the main process,
blind to children never waited for); the larger of the two is kept. A fresh process per measurement
means one task's memory never inflates another's. CPU time beside wall time shows how much other work
on the machine slowed it.
"""
from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import tempfile
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


def _tree_rss(proc) -> int:
    """Resident bytes of ``proc`` (a ``psutil.Process``) and all its descendants now."""
    import psutil

    total = 0
    with contextlib.suppress(psutil.Error):
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    return total


def measured(task: str, args: dict[str, Any], timeout: float | None = None) -> Measured:
    """Run ``task`` with keyword arguments ``args`` in a fresh Python process (see the module docstring)."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="amage-bench-") as tmp:
        args_path, result_path, log_path = (Path(tmp) / name for name in ("args.json", "result.json", "log.txt"))
        io.write_json(args_path, args)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as log:
            child = subprocess.Popen([sys.executable, "-m", "amage_core.bench.measure", task, str(args_path),
                                      str(result_path)], stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
            proc, peak, timed_out = psutil.Process(child.pid), 0, False
            while child.poll() is None:
                peak = max(peak, _tree_rss(proc))
                timed_out = timeout is not None and time.perf_counter() - t0 > timeout
                if timed_out:
                    child.kill()
                    child.wait()
                time.sleep(POLL_SECONDS)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if child.returncode != 0 or not result_path.is_file():
            why = f"timed out after {timeout:g} s" if timed_out else f"exit {child.returncode}"
            tail = log_path.read_text(encoding="utf-8")[-3000:]
            raise RuntimeError(f"benchmark task {task!r} failed ({why}):\n{tail}")
        result = io.read_json(result_path)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    own = float(result.pop("_self_maxrss_mb", 0.0))
    return Measured(result, wall, cpu, round(max(peak / MB, own), 1))


def main(argv: list[str]) -> int:
    """The worker: ``TASK ARGS.json RESULT.json``; the result gets the process's own peak RSS."""
    from amage_core.bench.tasks import TASKS

    task, args_path, result_path = argv
    if task not in TASKS:
        raise SystemExit(f"unknown benchmark task {task!r}; known: {sorted(TASKS)}")
    result = TASKS[task](**io.read_json(args_path))
    result["_self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    io.write_json(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
