"""The one parallel-map module: jobs in worker processes that die with their parent.

- :func:`map_folds` runs a list of jobs in order, in ``TrainConfig.fold_workers`` loky processes or
  in this one, each with its torch threads (:func:`job_threads`, :func:`cpu_threads`): training's
  folds (``train.cv``), interpretation's folds (``interpret.attributions``: attributions, occlusion);
- :func:`orphan_safe` is the guard every worker runs under: the fold workers of :func:`map_folds`
  and the preparation's participant workers (``data.prepare``, its own joblib pool).

A process killed with SIGKILL cannot stop its joblib/loky workers, which would go on computing and
writing (checkpoints, a preparation's parts/) as orphans. :func:`orphan_safe` runs a job in a worker
that watches its parent and exits at once when it is gone.

Torch is imported only by :func:`cpu_threads`, and ``amage_core.train`` only by :func:`map_folds`,
so the preparation imports neither.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from amage_core.config import TrainConfig

_WATCHED: set[int] = set()


def map_folds(fn, jobs: list[tuple], cfg: TrainConfig, progress: bool = True) -> list:
    """``[fn(*job, progress) for job in jobs]``, in order, with torch threads per job from
    :func:`job_threads`.

    With ``cfg.fold_workers`` > 1 (and not under torchrun) the jobs run in that many processes at
    once (loky; memory-mapped arrays travel by reference, ``fn`` and its arguments must pickle), with
    no progress bar. ``fn`` must not depend on which process runs it (each fold seeds itself)."""
    from amage_core.train import distributed     # here: amage_core.train imports this module

    workers = min(cfg.fold_workers, len(jobs))
    threads = job_threads(cfg, workers, os.cpu_count() or 1)
    if workers > 1 and not distributed.context().enabled:
        from joblib import Parallel, delayed

        parent = os.getpid()
        return Parallel(n_jobs=workers, backend="loky")(
            delayed(_in_worker)(parent, threads, fn, *job, False) for job in jobs)
    return [_with_threads(threads, fn, *job, progress) for job in jobs]


def job_threads(cfg: TrainConfig, running: int, cores: int) -> int:
    """Torch threads of each of ``running`` jobs fit at once (0: leave torch's setting).

    ``cfg.cpu_threads`` 0 shares the cores out among the jobs (one process of ``fold_workers``
    jobs keeps torch's own setting). Otherwise the profile's thread budget, ``fold_workers *
    cpu_threads`` but never more than the cores, is shared out among the jobs that actually run:
    a single fit (a cross-cohort run, one fold) gets the cores its idle siblings would have used."""
    if cfg.cpu_threads == 0:
        return max(1, cores // running) if running > 1 else 0
    budget = min(cores, cfg.fold_workers * cfg.cpu_threads)
    return max(cfg.cpu_threads, budget // max(1, running))


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """``n`` torch intra-op threads for the duration of a fit (0: leave torch's setting); restored after."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _with_threads(threads: int, fn, *args):
    with cpu_threads(threads):
        return fn(*args)


def _in_worker(parent: int, threads: int, fn, *args):
    """Run a job in a worker process that exits at once if ``parent`` dies (:func:`orphan_safe`)."""
    return orphan_safe(parent, _with_threads, threads, fn, *args)


def orphan_safe(parent: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, in a process that exits (status 3) within ``interval`` seconds of ``parent``
    dying. In ``parent`` itself (a sequential run) nothing is watched."""
    exit_with_parent(parent)
    return fn(*args)


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Start (once per process) a daemon thread that ends this process when its parent is no
    longer ``parent``."""
    if parent in _WATCHED or os.getpid() == parent:
        return
    _WATCHED.add(parent)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(interval)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def local_process_backend() -> bool:
    """Whether joblib's active backend runs jobs in child processes of this one (loky, the
    default, or multiprocessing): only then is the parent a worker's parent. A cluster backend
    (dask, ray) runs them elsewhere, where watching this process would be wrong."""
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    return type(backend).__name__ in ("LokyBackend", "MultiprocessingBackend")
