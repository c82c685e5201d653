"""Sex differences in brain age.

Inputs are a run's predictions joined with the participants' sex: a DataFrame with columns
``age``, ``sex`` (``M``/``F``) and a predicted-age column (by default the bias-corrected one, whose
correction was fit on training folds only). The brain-age gap is ``predicted - age``.

- :func:`gap_by_sex`: mean gap per sex, the female-minus-male difference with a Welch 95% CI, and
  Cohen's d with a bootstrap 95% CI (:func:`amage_core.stats.groups.group_difference`).
- :func:`trajectory_model`: OLS ``gap ~ age * C(sex)`` (statsmodels formula); the ``age:C(sex)[T.M]``
  term is the difference between the sexes' gap-vs-age slopes. With repeated measures per participant
  (a ``participant_id`` appearing more than once), a mixed model with a random intercept per
  participant is fitted instead.
- :func:`lowess_trajectories`: LOWESS curves of the gap (or predicted age) against age per sex.
"""
from __future__ import annotations

import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.nonparametric.smoothers_lowess import lowess

from amage_core.stats.groups import cohens_d, group_difference  # noqa: F401  (cohens_d: its old home)

SEXES = ("F", "M")


def _gaps(df: pd.DataFrame, column: str) -> pd.DataFrame:
    missing = {"age", "sex", column} - set(df.columns)
    if missing:
        raise ValueError(f"predictions lack column(s) {sorted(missing)} needed for the sex analysis")
    keep = ["age", "sex", column] + (["participant_id"] if "participant_id" in df else [])
    out = df.loc[df["sex"].isin(SEXES), keep].reset_index(drop=True)
    out["gap"] = out[column] - out["age"]
    if out["sex"].nunique() < 2:
        raise ValueError("the sex analysis needs participants of both sexes")
    return out


def gap_by_sex(df: pd.DataFrame, column: str = "predicted_age_corrected", n_boot: int = 2000,
               seed: int = 0) -> pd.DataFrame:
    """One row per sex (n, mean gap, SD) and one row ``F-M`` (difference, Welch 95% CI, p, Cohen's d
    with a percentile-bootstrap 95% CI): :func:`amage_core.stats.groups.group_difference`."""
    return group_difference(_gaps(df, column), "sex", "F", "M", "gap", n_boot, seed)


def trajectory_model(df: pd.DataFrame, column: str = "predicted_age_corrected", outcome: str = "gap"):
    """Fit ``<outcome> ~ age * C(sex)``; outcome ``gap`` or ``predicted`` (the predicted age itself).

    Returns the statsmodels results (OLS, or MixedLM with a random intercept per participant when
    participants repeat)."""
    g = _gaps(df, column).rename(columns={column: "predicted"})
    g["age_c"] = g["age"] - g["age"].mean()  # centred: the sex term is the difference at mean age
    formula = f"{outcome} ~ age_c * C(sex, Treatment('F'))"
    if "participant_id" in g and g["participant_id"].duplicated().any():
        return smf.mixedlm(formula, g, groups=g["participant_id"]).fit()
    return smf.ols(formula, g).fit()


def coefficient_table(result) -> pd.DataFrame:
    """Coefficients with 95% CIs and p-values, with readable term names."""
    ci = result.conf_int()
    table = pd.DataFrame({"estimate": result.params, "ci_low": ci[0], "ci_high": ci[1], "p": result.pvalues})
    table = table.loc[[i for i in table.index if i != "Group Var"]]
    table.index = [i.replace("C(sex, Treatment('F'))[T.M]", "male").replace("age_c", "age") for i in table.index]
    return table


def lowess_trajectories(df: pd.DataFrame, column: str = "predicted_age_corrected", outcome: str = "gap",
                        frac: float = 0.6) -> pd.DataFrame:
    """LOWESS curve of the outcome against age for each sex: columns sex, age, value."""
    g = _gaps(df, column).rename(columns={column: "predicted"})
    parts = []
    for sex, sub in g.groupby("sex"):
        fit = lowess(sub[outcome], sub["age"], frac=frac, return_sorted=True)
        parts.append(pd.DataFrame({"sex": sex, "age": fit[:, 0], "value": fit[:, 1]}))
    return pd.concat(parts, ignore_index=True)
