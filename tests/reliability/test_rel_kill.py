"""SIGKILL during `amage prep` and `amage train`: a re-run resumes, finishes and gives exactly the
outputs of an uninterrupted run (CPU: arrays, predictions and weights bitwise)."""
from __future__ import annotations

import filecmp
import signal
import time
from pathlib import Path

import pandas as pd
import torch

from rel_helpers import STEP, amage, assert_same_cohort, popen_amage, temporaries, train_args

PARTICIPANT = "amage_core.data.prepare:prepare_participant"


def prep_args(root: Path, out: Path, profile: Path) -> list[str]:
    return ["prep", "--dataset", "bids", "--root", str(root), "--out", str(out), "--profile", str(profile),
            "--quiet"]


def test_prep_killed_by_sigkill_resumes_to_the_same_cohort(tmp_path, synth_root, prepared_ref,
                                                           profile_path):
    out = tmp_path / "cohort"
    args = prep_args(synth_root, out, profile_path)
    reference_qc = pd.read_csv(prepared_ref / "qc.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert len(reference_qc) == 20 and not reference_qc["reason"].str.contains("age").any()
    # 1. an external SIGKILL after 4 participants (each takes >= 0.3 s here, so it lands between
    #    participants 4 and ~6)
    proc = popen_amage(args, faults=["--slow", f"{PARTICIPANT}=0.3"])
    deadline = time.monotonic() + 120
    while len(list((out / "parts").glob("*/record.json"))) < 4:
        assert proc.poll() is None, f"prep ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "prep made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = {p.parent.name for p in (out / "parts").glob("*/record.json")}
    assert 4 <= len(done) < 20 and not (out / "manifest.json").exists()

    # 2. the re-run resumes (finished participants are not prepared again) and is killed in turn
    #    just before os.replace(<temporary>, <out>/t1.npy), when the assembled array is complete
    calls = tmp_path / "calls.txt"
    res = amage(args, faults=["--count", f"{PARTICIPANT}={calls}", "--kill", f"os:replace=1@{out / 't1.npy'}'"])
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert len(calls.read_text().splitlines()) == 20 - len(done)
    assert (out / "connectivity.npy").is_file() and not (out / "t1.npy").exists()
    assert not (out / "manifest.json").exists()
    assert temporaries(out), "expected the interrupted write's temporary file"

    # 3. the last re-run finishes: the same cohort as an uninterrupted run, nothing left over
    res = amage(args)
    assert res.returncode == 0, res.stderr
    assert_same_cohort(out, prepared_ref)
    assert not (out / "parts").exists()
    assert temporaries(out) == [], "the re-run left the interrupted write's temporary file behind"


def test_train_killed_mid_epoch_and_mid_checkpoint_resumes_to_the_same_predictions(
        tmp_path, prepared_ref, profile_path, train_ref):
    ref, total = train_ref
    out = tmp_path / "run"
    args = train_args(prepared_ref, out, profile_path)
    # 1. SIGKILL before the last batch: the last epoch of the last fold is half done (>= 2 batches
    #    per epoch here: 7 fit participants, batch size 4)
    res = amage(args, faults=["--kill", f"{STEP}={total}"])
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert not (out / "predictions.tsv").exists()
    assert (out / "fold-0" / "done.json").is_file() and (out / "fold-1" / "checkpoint.pt").is_file()
    # 2. resume; SIGKILL again while the next checkpoint is moved into place
    res = amage(args + ["--resume"], faults=["--kill", "os:replace=1@checkpoint.pt'"])
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert temporaries(out), "expected the interrupted checkpoint's temporary file"
    # 3. resume to the end
    steps = tmp_path / "steps.txt"
    res = amage(args + ["--resume"], faults=["--count", f"{STEP}={steps}"])
    assert res.returncode == 0, res.stderr
    assert 0 < len(steps.read_text().splitlines()) < total / 2, "the run restarted instead of resuming"

    for name in ("predictions.tsv", "metrics.json", "folds.tsv"):
        assert filecmp.cmp(out / name, ref / name, shallow=False), f"{name} differs from the uninterrupted run"
    for fold in ("fold-0", "fold-1"):
        for name in ("predictions.tsv", "split.tsv", "scaler.json", "bias.json", "fit.json"):
            assert filecmp.cmp(out / fold / name, ref / fold / name, shallow=False), f"{fold}/{name}"
        a = pd.read_csv(out / fold / "history.csv").drop(columns="seconds")
        b = pd.read_csv(ref / fold / "history.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        ca = torch.load(out / fold / "checkpoint.pt", weights_only=True)
        cb = torch.load(ref / fold / "checkpoint.pt", weights_only=True)
        for key in ("model", "best_model"):
            assert ca[key].keys() == cb[key].keys()
            assert all(torch.equal(ca[key][k], cb[key][k]) for k in ca[key]), f"{fold} {key} weights differ"
    assert temporaries(out) == [], "the resumed run left the interrupted checkpoint's temporary file"
