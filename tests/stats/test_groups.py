"""group_difference: the one comparison behind the sex gap and the autism gap."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from amage_core.stats.groups import bootstrap_d, cohens_d, group_difference
from amage_core.stats.sex import gap_by_sex


def _two_groups(n_a: int = 60, n_b: int = 80, shift: float = 1.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(8, 40, n_a + n_b)
    site = rng.choice(["S1", "S2", "S3"], n_a + n_b)
    dx = np.array(["autism"] * n_a + ["control"] * n_b)
    gap = np.where(dx == "autism", shift, 0.0) + 0.05 * (age - 20) + rng.normal(0, 2.0, n_a + n_b)
    return pd.DataFrame({"dx": dx, "site": site, "age": age, "gap": gap, "sex": rng.choice(["F", "M"], n_a + n_b)})


def test_bootstrap_interval_is_the_books_earlier_loop_bitwise():
    """scipy's bootstrap, one resample per batch, draws what ``rng.choice`` drew in the loop the book
    used before: the intervals of earlier results are kept exactly."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(1, 2, 37), rng.normal(0, 2, 52)
    loop = np.random.default_rng(11)
    boot = [cohens_d(loop.choice(x, len(x)), loop.choice(y, len(y))) for _ in range(300)]
    assert bootstrap_d(x, y, n_boot=300, seed=11) == (np.percentile(boot, 2.5), np.percentile(boot, 97.5))


def test_group_difference_matches_welch_d_and_ols():
    df = _two_groups()
    table = group_difference(df, "dx", "autism", "control", "gap", n_boot=200, adjust="age + C(site)")
    x, y = (df.loc[df.dx == g, "gap"].to_numpy() for g in ("autism", "control"))
    row = table.loc["autism-control"]
    welch = stats.ttest_ind(x, y, equal_var=False)
    assert row["mean_gap"] == x.mean() - y.mean() and row["p"] == welch.pvalue
    assert (row["ci_low"], row["ci_high"]) == tuple(welch.confidence_interval(0.95))
    assert row["cohens_d"] == cohens_d(x, y) and row["d_ci_low"] < row["cohens_d"] < row["d_ci_high"]
    fit = smf.ols("gap ~ C(dx, Treatment('control')) + age + C(site)", df).fit()
    term = "C(dx, Treatment('control'))[T.autism]"
    assert row["adjusted"] == pytest.approx(fit.params[term], rel=1e-12)
    assert row["adj_p"] == pytest.approx(fit.pvalues[term], rel=1e-9)
    assert list(table.index) == ["autism", "control", "autism-control"]
    assert table.loc["autism", "n"] == 60 and table.loc["control", "sd_gap"] == pytest.approx(y.std(ddof=1))
    assert "adjusted" not in group_difference(df, "dx", "autism", "control", n_boot=50).columns


def test_gap_by_sex_is_the_group_difference_of_the_sexes():
    df = _two_groups().assign(predicted_age_corrected=lambda d: d["age"] + d["gap"])
    by_sex = gap_by_sex(df, n_boot=100, seed=3)
    direct = group_difference(df.assign(gap=df["predicted_age_corrected"] - df["age"]), "sex", "F", "M",
                              n_boot=100, seed=3)
    pd.testing.assert_frame_equal(by_sex, direct)
    assert list(by_sex.index) == ["F", "M", "F-M"]


def test_a_group_of_one_is_refused():
    df = _two_groups(n_a=1)
    with pytest.raises(ValueError, match="at least two 'autism'"):
        group_difference(df, "dx", "autism", "control")
