"""Interrupted preparation resumes without recomputing finished participants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import prep_fixtures as fx
from amage_core.data import prepare as prep


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "ds"
    root.mkdir()
    subs = [f"sub-{i:02d}" for i in range(1, 6)]
    pd.DataFrame({"participant_id": subs, "age": [20, 30, 40, 50, 200], "sex": ["M", "F"] * 2 + ["M"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    names = fx.dosenbach_names()
    for i, sub in enumerate(subs):
        fx.fmriprep_anat(root / "derivatives", sub, seed=i)
        fx.xcpd_tsv(root / "derivatives", sub, "dosenbach160", fx.series(40, 160, i), names)
    return root


def _counting(monkeypatch, fail_after: int | None = None):
    calls = []
    real = prep.prepare_participant

    def wrapped(record, *args, **kwargs):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt
        calls.append(record.participant_id)
        return real(record, *args, **kwargs)

    monkeypatch.setattr(prep, "prepare_participant", wrapped)
    return calls


def test_interrupted_run_resumes_and_matches_a_fresh_run(small_root, tmp_path, monkeypatch):
    fresh = prep.prepare_cohort("bids", small_root, tmp_path / "fresh", fx.cfg(), progress=False)
    out = tmp_path / "resumed"
    calls = _counting(monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_cohort("bids", small_root, out, fx.cfg(), progress=False)
    assert calls == ["sub-01", "sub-02"]
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in (out / "parts").iterdir() if p.is_dir()) == ["sub-01", "sub-02", "sub-05"]
    (out / "parts" / "sub-02" / "t1.npy").unlink()          # a damaged part is redone
    with pytest.raises(ValueError, match=r"another configuration.*min_volumes"):
        prep.prepare_cohort("bids", small_root, out, fx.cfg(min_volumes=35), progress=False)
    monkeypatch.undo()
    calls = _counting(monkeypatch)
    resumed = prep.prepare_cohort("bids", small_root, out, fx.cfg(), progress=False)
    assert calls == ["sub-02", "sub-03", "sub-04"]          # sub-01 kept, sub-05 (bad age) kept
    for name in ("connectivity", "t1"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(fresh, name))
    pd.testing.assert_frame_equal(resumed.participants, fresh.participants)
    pd.testing.assert_frame_equal(resumed.qc, fresh.qc)
    assert resumed.manifest["arrays"] == fresh.manifest["arrays"]
    calls.clear()
    again = prep.prepare_cohort("bids", small_root, out, fx.cfg(), progress=False)
    assert calls == [] and again.manifest["created"] == resumed.manifest["created"]


def test_parallel_equals_serial(small_root, tmp_path):
    serial = prep.prepare_cohort("bids", small_root, tmp_path / "s", fx.cfg(), progress=False)
    parallel = prep.prepare_cohort("bids", small_root, tmp_path / "p", fx.cfg(n_jobs=2), progress=False)
    assert parallel.manifest["arrays"] == serial.manifest["arrays"]
    pd.testing.assert_frame_equal(parallel.participants, serial.participants)
