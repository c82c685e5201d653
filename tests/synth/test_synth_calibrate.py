"""The calibration check runs end to end and reports every model beside its oracle."""
from __future__ import annotations

import numpy as np

from amage_core.synth.calibrate import calibration_table


def test_calibration_table(tiny_cohort):
    table = calibration_table(tiny_cohort, folds=3)
    assert list(table["model"]) == ["t1", "fc", "t1+fc", "median age"]
    assert np.isfinite(table["mae"]).all()
    learned = table.set_index("model")
    # even 16 training participants beat guessing the median age with the T1 model
    assert learned.loc["t1", "mae"] < learned.loc["median age", "mae"]
    assert (learned.loc[["t1", "fc", "t1+fc"], "oracle_mae"] < learned.loc[["t1", "fc", "t1+fc"], "mae"]).all()
