"""Paired comparison of two runs on the same participants (Wilcoxon signed-rank on |errors|)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from amage_core.evaluate.metrics import PREDICTION_COLUMNS
from amage_core.train.rundir import read_predictions


@dataclass
class PairedComparison:
    n: int                   # participants predicted by both runs
    mae_a: float
    mae_b: float
    mae_difference: float    # mae_a - mae_b (negative: run a is better)
    statistic: float         # Wilcoxon signed-rank statistic on |error_a| - |error_b|
    p_value: float           # two-sided
    correction: str          # "uncorrected" or "corrected"


def compare_runs(run_a, run_b, correction: str = "uncorrected") -> PairedComparison:
    """Are run a's absolute errors different from run b's on the same participants?

    Rows are matched on ``participant_id`` (and ``session`` when both runs have it); both runs must
    predict exactly the same participants with the same ages, or a ``ValueError`` says why not.
    """
    column = PREDICTION_COLUMNS[correction]
    a, b = read_predictions(run_a), read_predictions(run_b)
    keys = ["participant_id"] + (["session"] if "session" in a and "session" in b else [])
    for name, df in (("a", a), ("b", b)):
        if df.duplicated(keys).any():
            raise ValueError(f"run {name} has several predictions for the same {keys}")
    merged = a[keys + ["age", column]].merge(b[keys + ["age", column]], on=keys, how="outer",
                                             suffixes=("_a", "_b"), indicator=True)
    if (merged["_merge"] != "both").any():
        n_only = (merged["_merge"] != "both").sum()
        raise ValueError(f"{n_only} participant(s) are predicted by only one of the two runs")
    if not np.allclose(merged["age_a"], merged["age_b"]):
        raise ValueError("the two runs disagree on participants' ages: not the same cohort")
    err_a = np.abs(merged[f"{column}_a"] - merged["age_a"]).to_numpy()
    err_b = np.abs(merged[f"{column}_b"] - merged["age_a"]).to_numpy()
    test = stats.wilcoxon(err_a, err_b)
    return PairedComparison(len(merged), float(err_a.mean()), float(err_b.mean()),
                            float(err_a.mean() - err_b.mean()), float(test.statistic),
                            float(test.pvalue), correction)
