import numpy as np
import pandas as pd
import pytest

from amage_core.stats import sex


def _cohort(n=400, gap_f=2.0, slope_m=0.1, seed=0, noise=3.0):
    """Females' brain age runs `gap_f` years ahead; males' gap grows with age by `slope_m` per year."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 89, n)
    s = np.where(rng.random(n) < 0.5, "F", "M")
    gap = np.where(s == "F", gap_f, slope_m * (age - age.mean())) + rng.normal(0, noise, n)
    return pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(n)], "age": age, "sex": s,
                         "predicted_age_corrected": age + gap})


def test_gap_by_sex_recovers_a_known_difference_with_a_covering_ci():
    table = sex.gap_by_sex(_cohort(gap_f=2.0, slope_m=0.0))
    diff = table.loc["F-M"]
    assert diff.ci_low < 2.0 < diff.ci_high
    assert diff.p < 1e-6 and diff.d_ci_low > 0
    assert table.loc["F", "n"] + table.loc["M", "n"] == 400


def test_gap_by_sex_finds_nothing_when_there_is_nothing():
    diff = sex.gap_by_sex(_cohort(gap_f=0.0, slope_m=0.0, seed=3)).loc["F-M"]
    assert diff.ci_low < 0 < diff.ci_high


def test_cohens_d_matches_the_textbook_formula():
    a, b = np.array([1.0, 2, 3, 4]), np.array([2.0, 3, 4, 5, 6])
    sp = np.sqrt((3 * a.var(ddof=1) + 4 * b.var(ddof=1)) / 7)
    assert sex.cohens_d(a, b) == pytest.approx((a.mean() - b.mean()) / sp)


def test_trajectory_model_recovers_the_slope_difference():
    res = sex.trajectory_model(_cohort(gap_f=0.0, slope_m=0.1, n=800))
    table = sex.coefficient_table(res)
    row = table.loc["age:male"]
    assert row.ci_low < 0.1 < row.ci_high and row.p < 1e-6


def test_repeated_measures_use_a_mixed_model():
    df = _cohort(n=200)
    df = pd.concat([df, df.assign(age=df.age + 2, predicted_age_corrected=df.predicted_age_corrected + 2)])
    res = sex.trajectory_model(df)
    assert type(res).__name__.startswith("MixedLM")


def test_lowess_curves_per_sex_and_clear_errors():
    curves = sex.lowess_trajectories(_cohort())
    assert set(curves.sex) == {"F", "M"} and curves.groupby("sex").age.is_monotonic_increasing.all()
    with pytest.raises(ValueError, match="sex"):
        sex.gap_by_sex(_cohort().drop(columns="sex"))
    with pytest.raises(ValueError, match="both sexes"):
        sex.gap_by_sex(_cohort().assign(sex="F"))
