"""What chapter 11 shows: no absolute path in its messages, uncorrected accuracy in its tables."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from amage_core import abide
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
    table = abide.runs_table(results, {"ridge-fc": "ridge on FC"})
    assert not any("correct" in c for c in table.columns)
    assert table.loc["ridge on FC", "MAE"] > 5 and table.loc["ridge on FC", "Spearman(gap, age)"] == -1.0
    assert table.loc["ridge on FC", "time (s)"] == 12 and table.loc["stacking", "time (s)"] == "reused"
    assert table["n"].tolist() == [40, 40] and table.loc["stacking", "r"] == "n/a"   # constant: r undefined
    assert not table.isna().any().any()
