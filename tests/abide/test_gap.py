"""The autism - control gap comparison on constructed tables with a known difference."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from amage_core.abide import group_gap
from amage_core.plots import group_gaps

matplotlib.use("Agg")


def constructed(n: int = 400, difference: float = 1.5, sd: float = 2.0, seed: int = 0) -> pd.DataFrame:
    """Two groups of ``n`` over 4 sites (the same site mix in both groups, site offsets -1..2 years).
    Noise N(0, sd) is centred within each group x site cell and both groups have the same ages, so
    the autism - control difference in the sample is exactly ``difference`` (raw and adjusted)."""
    rng = np.random.default_rng(seed)
    dx = np.repeat(["autism", "control"], n)
    site = np.tile(np.repeat(["S1", "S2", "S3", "S4"], n // 4), 2)
    offset = pd.Series(site).map({"S1": -1.0, "S2": 0.0, "S3": 1.0, "S4": 2.0}).to_numpy()
    noise = pd.Series(rng.normal(0, sd, 2 * n))
    noise -= noise.groupby([dx, site]).transform("mean")
    gap = np.where(dx == "autism", difference, 0.0) + offset + noise.to_numpy()
    age = np.tile(rng.uniform(7, 30, n), 2)            # the same ages in both groups
    return pd.DataFrame({"dx": dx, "site": site, "age": age, "gap_corrected": gap})


def test_known_difference_is_recovered_with_intervals_that_cover_it():
    df = constructed()
    table = group_gap(df, n_boot=500)
    row = table.loc["autism-control"]
    assert row["mean_gap"] == pytest.approx(1.5) and row["adjusted"] == pytest.approx(1.5, abs=1e-6)
    assert row["ci_low"] < 1.5 < row["ci_high"] and row["adj_ci_low"] < 1.5 < row["adj_ci_high"]
    se = np.sqrt(sum(df.loc[df.dx == g, "gap_corrected"].var() / 400 for g in ("autism", "control")))
    assert row["ci_high"] - row["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.01)   # Welch 95% CI
    true_d = 1.5 / np.sqrt(2.0 ** 2 + np.var([-1.0, 0.0, 1.0, 2.0]))                # noise + site offsets
    assert row["d_ci_low"] < row["cohens_d"] < row["d_ci_high"]
    assert row["cohens_d"] == pytest.approx(true_d, rel=0.1)
    assert row["adj_ci_high"] - row["adj_ci_low"] < row["ci_high"] - row["ci_low"]   # site explains variance
    assert row["p"] < 1e-6 and table.loc["autism", "n"] == 400 and table.loc["control", "n"] == 400


def test_no_difference_gives_an_interval_around_zero():
    row = group_gap(constructed(difference=0.0, seed=3), n_boot=300).loc["autism-control"]
    assert row["ci_low"] < 0 < row["ci_high"] and row["d_ci_low"] < 0 < row["d_ci_high"]


def test_too_few_participants_is_an_error():
    df = constructed(n=8).iloc[[0, 8, 9, 10]]
    with pytest.raises(ValueError, match="two 'autism'"):
        group_gap(df)


def test_group_gap_figure_has_one_box_pair_per_model():
    df = constructed(n=48)
    fig = group_gaps({"model A": df, "model B": df})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["model A", "model B"]
    assert ax.get_legend() is not None


def test_describe_gaps_sorts_models_by_the_sign_of_their_interval():
    from amage_core.report import describe_gaps

    gaps = pd.DataFrame({"cohens_d": [-0.3, 0.05, 0.4], "d_ci_low": [-0.45, -0.1, 0.2],
                         "d_ci_high": [-0.15, 0.2, 0.6]}, index=["A", "B", "C"])
    text = describe_gaps(gaps)
    assert "younger than controls' with A (d = -0.30" in text and "older with C" in text
    assert "from zero with B." in text
