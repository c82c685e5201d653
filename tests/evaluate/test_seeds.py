"""Seed runs: the ensemble averages each participant over seeds; the spread is over seeds."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amage_core import report
from amage_core.evaluate.seeds import SeedRuns, ensemble


@dataclass
class FakeRun:
    predictions: pd.DataFrame
    path: Path = Path(".")
    complete: bool = True
    reused: bool = False


def _table(offset, order=None):
    ids = [f"sub-{i}" for i in range(6)]
    age = np.array([20.0, 30, 40, 50, 60, 70])
    t = pd.DataFrame({"participant_id": ids, "fold": ["0", "0", "0", "1", "1", "1"], "age": age,
                      "predicted_age": age + offset, "predicted_age_corrected": age + offset / 2,
                      "gate_0": 0.5 + offset / 100})
    return t.iloc[order].reset_index(drop=True) if order is not None else t


def test_ensemble_averages_each_participant_whatever_the_row_order():
    a, b = _table(2.0), _table(-4.0, order=[5, 4, 3, 2, 1, 0])
    out = ensemble([a, b])
    np.testing.assert_allclose(out["predicted_age"] - out["age"], -1.0)
    np.testing.assert_allclose(out["gate_0"], 0.49)
    np.testing.assert_allclose(out["predicted_age_seed_sd"], np.std([2.0, -4.0], ddof=1))


def test_ensemble_refuses_other_participants():
    other = _table(1.0)
    other.loc[0, "participant_id"] = "sub-x"
    with pytest.raises(ValueError, match="different participants"):
        ensemble([_table(0.0), other])


def test_seed_runs_spread_and_summary_table():
    runs = SeedRuns("m", [1, 2, 3], [FakeRun(_table(o)) for o in (1.0, 2.0, 3.0)])
    spread = runs.spread()["mae"]
    assert (spread["mean"], spread["sd"], spread["min"], spread["max"]) == pytest.approx((2.0, 1.0, 1.0, 3.0))
    assert runs.metrics["uncorrected"]["pooled"]["mae"] == pytest.approx(2.0)      # the ensemble's
    table = report.metrics_summary({"m": runs, "single": FakeRun(_table(1.0))})
    assert table.loc["m", "MAE (seed mean ± SD)"] == "2.00 ± 1.00" and table.loc["m", "seeds"] == 3
    assert table.loc["single", "seeds"] == 1 and table.loc["single", "MAE (seed mean ± SD)"] == "(one run)"
