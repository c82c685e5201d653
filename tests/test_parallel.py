"""The parallel map (``amage_core.parallel``): the thread budget shared out among the jobs that run;
fold workers die with their parent (a training killed with SIGKILL leaves nothing computing)."""
from __future__ import annotations

import sys
import textwrap

import pytest

from amage_core.config import TrainConfig
from amage_core.parallel import job_threads
from orphan_check import workers_die_with_parent


@pytest.mark.parametrize(("workers", "threads", "running", "cores", "expected"), [
    (3, 1, 3, 2, 1),     # the demo: 3 folds at once, one thread each
    (3, 1, 1, 2, 2),     # a single fit (cross-cohort) gets both cores, not one
    (3, 1, 2, 2, 1),
    (3, 1, 1, 16, 3),    # never more than the profile's budget of fold_workers * cpu_threads
    (1, 4, 1, 2, 4),     # an explicit cpu_threads is a floor
    (3, 0, 3, 16, 5),    # 0: the cores shared out among the running jobs
    (1, 0, 1, 16, 0),    # 0 and one job in this process: torch's own setting
])
def test_thread_budget_is_shared_out_among_the_jobs_that_run(workers, threads, running, cores, expected):
    cfg = TrainConfig(fold_workers=workers, cpu_threads=threads)
    assert job_threads(cfg, running, cores) == expected


SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from amage_core.config import TrainConfig
    from amage_core.parallel import map_folds

    out = Path(sys.argv[1])

    def job(name, progress):
        (out / f"{name}.pid").write_text(str(os.getpid()))
        time.sleep(120)

    map_folds(job, [("a",), ("b",)], TrainConfig(fold_workers=2, cpu_threads=1), progress=False)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_fold_workers_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT)
    workers_die_with_parent([sys.executable, str(script), str(tmp_path)], tmp_path, 2, "fold workers",
                            start_s=60)
