"""Worker processes that die with their parent.

A process killed with SIGKILL cannot stop its joblib/loky workers, which would go on computing and
writing (checkpoints, a preparation's parts/) as orphans. :func:`orphan_safe` runs a job in a worker
that watches its parent and exits at once when it is gone; training's fold workers
(``train.loop.map_folds``) and the preparation's participant workers (``data.prepare``) use it.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

_WATCHED: set[int] = set()


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
