"""Tables the chapters show: accuracy of uncorrected predictions only, readable p-values and counts,
models measured against the reachable floor."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from amage_core import report

RNG = np.random.default_rng(0)
AGE = RNG.uniform(18, 89, 90)


def _run(noise: float, shrink: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    pred = AGE + rng.normal(0, noise, len(AGE))
    pred = pred + shrink * (AGE.mean() - pred)
    df = pd.DataFrame({"participant_id": [f"sub-{i:03d}" for i in range(len(AGE))], "fold": np.arange(len(AGE)) % 3,
                       "age": AGE, "predicted_age": pred,
                       "predicted_age_corrected": AGE + 0.1})      # a flattering 'correction'
    return SimpleNamespace(predictions=df, metrics={"uncorrected": {}, "corrected": {}})


def test_metrics_summary_shows_uncorrected_accuracy_only():
    runs = {"good": _run(3.0), "flat": _run(3.0, shrink=0.99, seed=1)}
    table = report.metrics_summary(runs)
    assert not any("correct" in c.lower() for c in table.columns)
    assert {"MAE", "RMSE", "R²", "r", "r(gap, age)", "Spearman(gap, age)", "n"} <= set(table.columns)
    assert table.loc["good", "MAE"] == pytest.approx(np.mean(np.abs(runs["good"].predictions["predicted_age"] - AGE)), abs=0.01)
    assert table.loc["flat", "MAE"] > 10           # the near-constant predictor is not rescued
    assert table.loc["flat", "Spearman(gap, age)"] < -0.9
    assert table["n"].dtype.kind == "i" and not table.isna().any().any()


def test_paired_tests_format_p_and_counts():
    runs = {"good": _run(3.0), "bad": _run(9.0, seed=2)}
    table = report.paired_tests(runs, reference="good")
    assert table.loc["bad", "Wilcoxon p"] == "< 0.001" and table["n"].dtype.kind == "i"


def test_floor_table_measures_against_the_floor(monkeypatch):
    monkeypatch.setattr(report, "bounds", lambda profile, name: {
        "floor": {"smri": 3.0, "fmri": 6.0, "both": 2.8}, "oracle": {"smri": 2.9, "fmri": 4.1, "both": 2.7}})
    runs = {"GAT": _run(6.0), "AMAge-Net": _run(6.0)}
    table = report.floor_table(runs, None, "camcan", {"GAT": "fmri", "AMAge-Net": "amagenet"})
    assert table.loc["GAT", "floor MAE"] == 6.0 and table.loc["AMAge-Net", "floor MAE"] == 2.8
    assert table.loc["GAT", "within 25% of the floor"] == "yes" and table.loc["AMAge-Net", "within 25% of the floor"] == "no"
    assert table.loc["AMAge-Net", "MAE / floor"] == pytest.approx(table.loc["AMAge-Net", "MAE"] / 2.8, abs=0.01)
    assert table.loc["GAT", "oracle MAE (unreachable)"] == 4.1
    monkeypatch.setattr(report, "bounds", lambda profile, name: {})
    assert "no floor" in report.floor_table(runs, None, "abide")


def test_fusion_headroom_is_computed_from_the_floors(monkeypatch):
    monkeypatch.setattr(report, "bounds", lambda profile, name: {
        "floor": {"both": 2.84, "smri": 2.94, "fmri": 5.96}, "oracle": {"both": 2.7, "smri": 2.9, "fmri": 4.1}})
    text = report.fusion_headroom(None, "camcan")
    assert "2.84 with both, 2.94 with the T1 alone and 5.96 with the fMRI alone" in text
    assert "by 3.4%" in text
    monkeypatch.setattr(report, "bounds", lambda profile, name: {})
    assert report.fusion_headroom(None, "abide") == ""


def test_compare_sentence_is_generated_from_the_runs():
    runs = {"good": _run(3.0), "bad": _run(9.0, seed=2)}
    text = report.compare_sentence(runs, "good", "bad")
    assert "good beats bad" in text and "inconclusive" in text and "one seed" in text and "p < 0.001" in text


def test_readable_formats_p_counts_and_blanks():
    table = pd.DataFrame({"n": [12.0, 30.0, np.nan], "mean_gap": [0.12345, np.nan, 1.0], "p": [np.nan, 0.0002, 0.2],
                          "adj_p": [0.04, 0.5, np.nan], "label": ["a", None, "c"]}, index=["F", "M", "F-M"])
    out = report.readable(table)
    assert out["n"].tolist() == [12, 30, "–"] and isinstance(out.loc["F", "n"], int)
    assert out["p"].tolist() == ["–", "< 0.001", "0.200"] and out.loc["F", "adj_p"] == "0.040"
    assert out.loc["F", "mean_gap"] == 0.123 and out.loc["M", "mean_gap"] == "–" and out.loc["M", "label"] == "–"
    assert not out.isna().any().any()


def test_recipe_table_says_where_the_late_fusion_weights_are_fit():
    from amage_core.config import load_profile, replace

    prof = load_profile("demo")

    def weights(**train):
        return report.recipe_table(replace(prof, train=train)).loc["late-fusion weights", "value"]

    assert weights() == ("least squares, each in [0, 1], on a pair of branch runs holding out 20% of each "
                         "training fold")
    assert weights(blend_folds=5).endswith("disjoint parts of 20% of each training fold: every training "
                                           "participant once (cross-fitting)")
    assert weights(blend_folds=3).endswith("disjoint parts of 20% of each training fold")
    assert weights(blend_fraction=0.0) == weights(protocol="released-code") == "learnt in sample with the fusion stage"
