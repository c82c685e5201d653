"""What chapter 11 shows: no absolute path in its messages, uncorrected accuracy in its tables
(``report.abide_*``)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from amage_core import abide, report
from amage_core.config import load_profile


def test_messages_show_no_absolute_path(tmp_path):
    for root in (tmp_path / "nowhere", tmp_path):
        status = abide.availability(load_profile("demo", {"cohorts": {"abide": {"root": str(root)}}}))
        assert str(tmp_path) not in status.message and root.name in status.message


def test_runs_table_shows_uncorrected_accuracy_only():
    age = np.linspace(7, 50, 40)
    pred = pd.DataFrame({"participant_id": [f"s{i}" for i in range(40)], "age": age,
                         "predicted_age": np.full(40, 20.0), "predicted_age_corrected": age})
    results = {"ridge-fc": SimpleNamespace(run=SimpleNamespace(predictions=pred), seconds=12.4),
               "stacking": SimpleNamespace(run=SimpleNamespace(predictions=pred), seconds=None)}
    table = report.abide_runs_table(results, {"ridge-fc": "ridge on FC"})
    assert not any("correct" in c for c in table.columns)
    assert table.loc["ridge on FC", "MAE"] > 5 and table.loc["ridge on FC", "Spearman(gap, age)"] == -1.0
    assert table.loc["ridge on FC", "time (s)"] == 12 and table.loc["stacking", "time (s)"] == "reused"
    assert table["n"].tolist() == [40, 40] and table.loc["stacking", "r"] == "n/a"   # constant: r undefined
    assert not table.isna().any().any()


def test_cohort_table_counts_each_diagnosis():
    def group(n, sites, males, ages):
        return SimpleNamespace(participants=pd.DataFrame({
            "site": (sites * n)[:n], "sex": ["M"] * males + ["F"] * (n - males), "age": ages}))

    data = {"abide": SimpleNamespace(controls=group(4, ["A", "B"], 3, [8.0, 10.0, 12.0, 30.0]),
                                     autism=group(3, ["A"], 3, [9.0, 11.0, 13.0]))}
    table = report.abide_cohort_table(data)
    assert table.loc[("abide", "control")].to_dict() == {"n": 4, "sites": 2, "males": 3, "age median": 11.0,
                                                         "age range": "8.0-30.0"}
    assert table.loc[("abide", "autism"), "sites"] == 1 and table.loc[("abide", "autism"), "males"] == 3
