"""Brain-age metrics against hand-computed values, scikit-learn and scipy."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import r2_score

from amage_core.evaluate.metrics import metrics_table, regression_metrics, summarise

AGE = np.array([20.0, 30.0, 40.0, 50.0])
PRED = np.array([22.0, 28.0, 45.0, 50.0])


def test_metrics_on_known_inputs():
    m = regression_metrics(AGE, PRED)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx((2 + 2 + 5 + 0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 4 + 25 + 0) / 4))
    ss_res, ss_tot = 33.0, float(((AGE - AGE.mean()) ** 2).sum())
    assert m["r2"] == pytest.approx(1 - ss_res / ss_tot) == pytest.approx(r2_score(AGE, PRED))
    assert m["pearson_r"] == pytest.approx(np.corrcoef(AGE, PRED)[0, 1])
    assert m["gap_age_r"] == pytest.approx(stats.pearsonr(AGE, PRED - AGE).statistic)
    assert m["gap_age_spearman"] == pytest.approx(stats.spearmanr(AGE, PRED - AGE).statistic)


def test_undefined_correlations_are_none_not_nan():
    m = regression_metrics(AGE, np.full(4, 35.0))      # constant predictions
    assert m["pearson_r"] is None and m["mae"] == pytest.approx(10.0)
    assert m["gap_age_spearman"] == pytest.approx(-1.0)    # the gap is minus age: all regression to the mean


def test_summary_pools_and_averages_folds():
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 30)
    df = pd.DataFrame({"fold": np.repeat(["0", "1", "2"], 10), "age": age,
                       "predicted_age": age + rng.normal(0, 5, 30),
                       "predicted_age_corrected": age + rng.normal(0, 4, 30)})
    s = summarise(df)
    assert s["folds"] == ["0", "1", "2"] and s["n"] == 30
    for kind, col in (("uncorrected", "predicted_age"), ("corrected", "predicted_age_corrected")):
        per_fold = [np.abs(g[col] - g["age"]).mean() for _, g in df.groupby("fold")]
        assert s[kind]["fold_mean"]["mae"] == pytest.approx(np.mean(per_fold))
        assert s[kind]["fold_sd"]["mae"] == pytest.approx(np.std(per_fold, ddof=1))
        assert s[kind]["pooled"]["mae"] == pytest.approx(np.abs(df[col] - df["age"]).mean())
    table = metrics_table(s)
    assert len(table) == 6 and table.loc[0, "mae"] == pytest.approx(s["uncorrected"]["pooled"]["mae"])


def test_single_fold_has_no_sd():
    df = pd.DataFrame({"fold": "external", "age": AGE, "predicted_age": PRED,
                       "predicted_age_corrected": PRED})
    s = summarise(df)
    assert s["corrected"]["fold_sd"]["mae"] is None
    assert s["corrected"]["fold_mean"]["mae"] == pytest.approx(2.25)
