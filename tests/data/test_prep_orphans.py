"""`amage prep --n-jobs 2` killed with SIGKILL: its participant workers exit too, instead of going on
computing and writing parts/ as orphans (the same guard as training's fold workers)."""
from __future__ import annotations

import os
import sys
import textwrap

import pytest

import prep_fixtures as pf
from orphan_check import workers_die_with_parent

SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from amage_core.config import PrepConfig
    from amage_core.data import prepare

    root, out, pids = (Path(a) for a in sys.argv[1:4])

    def slow(record, *args):
        (pids / f"{os.getpid()}.pid").write_text(str(os.getpid()))
        time.sleep(120)

    prepare.prepare_participant = slow     # the workers receive this function (pickled by value)
    prepare.prepare_cohort("bids", root, out, PrepConfig(n_jobs=2, min_volumes=10), progress=False)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_prep_workers_exit_when_the_preparation_is_killed(tmp_path):
    root = pf.build_xcpd_cohort(tmp_path / "ds", 4, n_vol=40)
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT)
    workers_die_with_parent([sys.executable, str(script), str(root), str(tmp_path / "out"), str(pids)], pids, 2,
                            "prep workers")


def test_sequential_preparation_watches_nothing():
    """With one job the participants are prepared in this process: nothing to watch."""
    from amage_core import parallel

    assert parallel.orphan_safe(os.getpid(), lambda x: x + 1, 1) == 2
    assert parallel.local_process_backend()          # joblib's default: loky, child processes
