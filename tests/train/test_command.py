"""`amage train`: baselines and model variants from the command line."""
from __future__ import annotations

import json

import pytest

from amage_core.cli import main
from train_fixtures import make_cohort


@pytest.fixture
def args(tmp_path, repo):
    make_cohort(tmp_path / "cohort")
    return ["train", "--data", str(tmp_path / "cohort"), "--profile",
            str(repo / "tests" / "profiles" / "tiny.yml"), "--quiet"]


def test_baseline_from_the_command_line(args, tmp_path, capsys):
    assert main(args + ["--model", "ridge-table", "--out", str(tmp_path / "run"), "--folds", "3"]) == 0
    assert "MAE" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["folds"] == ["0", "1", "2"]


@pytest.mark.filterwarnings("ignore:bias correction slope")
def test_one_fold_of_a_variant(args, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args + ["--model", "fmri", "--out", str(out), "--fold", "1", "--epochs", "1"]) == 0
    assert "remaining folds" in capsys.readouterr().out
    assert (out / "fold-1" / "done.json").is_file() and not (out / "fold-0").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["variant"] == "fmri" and config["train"]["epochs"] == 1


def test_unknown_model_is_one_clear_error(args, tmp_path, capsys):
    assert main(args + ["--model", "nope", "--out", str(tmp_path / "run")]) == 2
    assert "unknown --model" in capsys.readouterr().err
