"""The simulated Colab: a fresh virtual environment that already holds its own numpy, pandas, kernel
(ipykernel, nbformat) and torch, into which the chapters' set-up cell clones and installs the local
repository (see pkg_env for how it stays fast)."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from amage_core import colab
from pkg_env import PREINSTALLED, make_venv, pip, snapshot, versions

KERNEL = "colab-sim"


@dataclass
class ColabEnv:
    python: Path
    url: str                  # file:// URL of the snapshot the set-up cell clones
    clone: Path               # where the set-up cell cloned it
    before: dict[str, str]    # distributions before the set-up cell ran
    after: dict[str, str]     # ... and after
    setup_output: str
    jupyter_path: Path        # JUPYTER_PATH holding the kernel spec KERNEL

    def cell(self) -> str:
        """The chapters' set-up cell with this environment's repository and clone folder."""
        return colab.setup_cell_source(self.url, "main", str(self.clone))

    def env(self, profile: str | Path) -> dict[str, str]:
        """Environment of a simulated Colab kernel running on ``profile`` (none of this checkout's
        PYTHONPATH: the kernel must import the clone)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return {**env, "COLAB_RELEASE_TAG": "simulated", colab.PROFILE_ENV: str(profile),
                "JUPYTER_PATH": str(self.jupyter_path), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def colab_env(tmp_path_factory) -> ColabEnv:
    root = tmp_path_factory.mktemp("colab")
    python = make_venv(root / "venv")
    pip(python, "install", "-q", *(f"{k}=={v}" for k, v in PREINSTALLED.items()))
    subprocess.run([str(python), "-m", "ipykernel", "install", "--prefix", str(root / "jupyter"), "--name", KERNEL],
                   check=True, capture_output=True)
    (root / "snapshot").mkdir()
    env = ColabEnv(python, snapshot(root / "snapshot"), root / "content" / "amage-net-book", {}, {}, "",
                   root / "jupyter" / "share" / "jupyter")
    env.before = versions(python)
    # the set-up cell itself, as a chapter's kernel runs it (its parameters cell set profile first)
    proc = subprocess.run([str(python), "-c", 'profile = "demo"\n' + env.cell() + "\nprint('PROFILE', profile)"],
                          capture_output=True, text=True, env=env.env("tiny-from-env"), cwd=root, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"the set-up cell failed in the simulated Colab:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    env.setup_output = proc.stdout
    env.after = versions(python)
    return env
