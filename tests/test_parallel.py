"""The parallel map (``amage_core.parallel``): the thread budget shared out among the jobs that run."""
from __future__ import annotations

import pytest

from amage_core.config import TrainConfig
from amage_core.parallel import job_threads


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
