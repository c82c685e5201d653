"""``amage train``: participant selection (--where), refusal of --out inside the cohort, fusion
variants trained from their branches as the book trains them, uncorrected accuracy printed."""
from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest

from amage_core.cli import main
from amage_core.train.command import parse_where
from train_fixtures import make_cohort


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_parse_where():
    assert parse_where(["sex=M", " site = NYU "]) == {"sex": "M", "site": "NYU"}
    for bad in (["sex"], ["=M"], ["sex="], ["sex=M", "sex=F"]):
        with pytest.raises(ValueError, match="--where"):
            parse_where(bad)


def test_where_selects_participants_and_out_inside_the_cohort_is_refused(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", n=40)
    code, out, _ = run_cli(["train", "--data", str(cohort.root), "--model", "ridge-fc", "--out",
                            str(tmp_path / "run"), "--where", "sex=M", "--folds", "2", "--quiet"])
    assert code == 0 and "MAE" in out and "corrected" not in out
    pred = pd.read_csv(tmp_path / "run" / "predictions.tsv", sep="\t")
    sex = cohort.participants.set_index("participant_id")["sex"]
    assert len(pred) == (sex == "M").sum() and set(sex[pred["participant_id"]]) == {"M"}

    code, _, err = run_cli(["train", "--data", str(cohort.root), "--model", "ridge-fc", "--out",
                            str(cohort.root / "runs" / "x"), "--quiet"])
    assert code == 2 and "inside the prepared cohort" in err and not (cohort.root / "runs").exists()
    code, _, err = run_cli(["train", "--data", str(cohort.root), "--model", "ridge-fc", "--out",
                            str(tmp_path / "r2"), "--where", "handedness=L", "--quiet"])
    assert code == 2 and "handedness" in err


@pytest.mark.filterwarnings("ignore:bias correction slope")
def test_a_fusion_variant_trains_from_its_branches(tmp_path, repo):
    cohort = make_cohort(tmp_path / "cohort", n=30)
    profile = repo / "tests" / "profiles" / "tiny.yml"
    code, out, err = run_cli(["train", "--data", str(cohort.root), "--model", "amagenet", "--profile",
                              str(profile), "--out", str(tmp_path / "fused"), "--epochs", "1", "--quiet"])
    assert code == 0, err
    branches = tmp_path / "fused-branches"
    assert {p.name for p in branches.iterdir()} == {"fmri", "structural", "fmri-blend", "structural-blend"}
    assert (branches / "fmri-blend" / "fold-0" / "val_predictions.tsv").is_file()
