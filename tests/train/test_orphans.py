"""Fold workers die with their parent: a training killed with SIGKILL leaves nothing computing."""
from __future__ import annotations

import sys
import textwrap

import pytest

from orphan_check import workers_die_with_parent

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
