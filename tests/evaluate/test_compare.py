"""Paired comparison of two runs on the same participants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from amage_core.evaluate.compare import compare_runs


def _run(errors: np.ndarray, age: np.ndarray, ids) -> pd.DataFrame:
    return pd.DataFrame({"participant_id": ids, "fold": "0", "age": age, "predicted_age": age + errors,
                         "predicted_age_corrected": age + errors})


def test_wilcoxon_on_absolute_errors_matches_scipy(tmp_path):
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 40)
    ids = [f"sub-{i}" for i in range(40)]
    a, b = rng.normal(0, 3, 40), rng.normal(0, 6, 40)
    run_b = tmp_path / "b"
    run_b.mkdir()
    _run(b, age, ids).iloc[::-1].to_csv(run_b / "predictions.tsv", sep="\t", index=False)  # other order
    result = compare_runs(_run(a, age, ids), run_b)
    expected = stats.wilcoxon(np.abs(a), np.abs(b))
    assert result.n == 40
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.mae_difference == pytest.approx(np.abs(a).mean() - np.abs(b).mean())
    assert result.mae_difference < 0 and result.p_value < 0.05


def test_runs_on_different_participants_are_refused():
    age = np.linspace(20, 80, 10)
    a = _run(np.ones(10), age, [f"sub-{i}" for i in range(10)])
    b = _run(np.ones(10), age, [f"sub-{i + 1}" for i in range(10)])
    with pytest.raises(ValueError, match="only one"):
        compare_runs(a, b)
