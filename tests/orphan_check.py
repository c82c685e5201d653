"""Shared by the orphan tests: start a parent process whose workers write ``<pid>.pid`` files, kill
the parent with SIGKILL, and check that the workers are gone within seconds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead); reads /proc (Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def workers_die_with_parent(argv: list[str], pids: Path, n: int, what: str, start_s: float = 90) -> None:
    """Run ``argv``; once ``n`` workers have written their pid into ``pids``, SIGKILL the parent and
    assert that every worker exits within 10 s (``what`` names them in the failure)."""
    parent = subprocess.Popen(argv)
    try:
        deadline = time.time() + start_s
        while len(list(pids.glob("*.pid"))) < n and time.time() < deadline:
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in pids.glob("*.pid")]
        assert len(workers) == n, f"the {what} did not start"
        assert all(alive(p) for p in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while any(alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in workers), f"{what} outlived their killed parent"
    finally:
        parent.kill()
        for p in pids.glob("*.pid"):                 # never leave a sleeping worker behind
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
