"""Entry point of one measured process: ``python -m amage_core.bench.worker TASK ARGS.json RESULT.json``.

Runs one task of :data:`TASKS` with the arguments in ``ARGS.json`` and writes its result (plus the
process's own peak RSS, ``_self_maxrss_mb``) to ``RESULT.json``. Started by
:func:`amage_core.bench.measure.measured`; not meant to be run by hand.
"""
from __future__ import annotations

import resource
import sys

from amage_core import io


def _tasks() -> dict:
    from amage_core.bench import data_tasks, train_tasks

    return {"synth": data_tasks.synth, "prep": data_tasks.prep, "pipeline": data_tasks.pipeline,
            "epochs": train_tasks.epochs, "step": train_tasks.step, "cuda_step": train_tasks.cuda_step}


def main(argv: list[str]) -> int:
    task, args_path, result_path = argv
    tasks = _tasks()
    if task not in tasks:
        raise SystemExit(f"unknown benchmark task {task!r}; known: {sorted(tasks)}")
    result = tasks[task](**io.read_json(args_path))
    # ru_maxrss is in KiB on Linux
    result["_self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    io.write_json(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
