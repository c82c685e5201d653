"""The difference between two groups of participants in their brain-age gap.

One function for every group comparison of the book: the sex gap (``stats.sex.gap_by_sex``:
female - male) and the diagnosis gap (``abide.group_gap``: autism - control).

- :func:`group_difference`: per group n, mean gap and SD; the difference ``a - b`` with a Welch 95%
  CI and p; Cohen's d (pooled SD) with a percentile-bootstrap 95% CI (``scipy.stats.bootstrap``);
  optionally the difference adjusted for covariates (OLS, statsmodels formula).
- :func:`cohens_d`: the effect size itself.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CI_PERCENTILES = (2.5, 97.5)    # the bootstrap interval of Cohen's d: 95%, percentile method


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d with the pooled standard deviation: (mean(a) - mean(b)) / s_pooled."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / pooled)


def bootstrap_d(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap 95% CI of :func:`cohens_d` (``scipy.stats.bootstrap``, each group
    resampled on its own).

    One resample per batch, ``a`` then ``b``, from ``np.random.default_rng(seed)``: the draws of the
    book's earlier loop (``rng.choice(a)``, ``rng.choice(b)``, ``n_boot`` times), so its intervals
    are kept bitwise. The percentiles are taken at exactly 2.5 and 97.5 (``np.percentile``) from the
    bootstrap distribution: scipy's own interval computes the level as ``(1 - 0.95) / 2``, which is
    2.5000000000000022 % in floating point and moves the last digits."""
    # random_state: the keyword every supported scipy takes (1.15 added ``rng`` for it)
    res = stats.bootstrap((np.asarray(a, float), np.asarray(b, float)), cohens_d, n_resamples=n_boot,
                          batch=1, vectorized=False, method="percentile",
                          random_state=np.random.default_rng(seed))
    low, high = np.percentile(res.bootstrap_distribution, CI_PERCENTILES)
    return float(low), float(high)


def group_difference(df: pd.DataFrame, group: str, a: str, b: str, value: str = "gap",
                     n_boot: int = 2000, seed: int = 0, adjust: str | None = None) -> pd.DataFrame:
    """Rows ``a`` and ``b`` (n, mean_gap, sd_gap of column ``value``) and a row ``a-b``: difference,
    Welch 95% CI (``ci_low``, ``ci_high``) and ``p``, ``cohens_d`` with its bootstrap 95% CI
    (``d_ci_low``, ``d_ci_high``: :func:`bootstrap_d`).

    ``adjust``: right-hand terms of an OLS formula (e.g. ``"age + C(site)"``): the difference
    adjusted for them, ``value ~ C(group, Treatment(b)) + <adjust>`` (``adjusted``, ``adj_ci_low``,
    ``adj_ci_high``, ``adj_p``). Fewer than two participants in a group is a ``ValueError``."""
    x = df.loc[df[group] == a, value].to_numpy(dtype=float)
    y = df.loc[df[group] == b, value].to_numpy(dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"the gap comparison needs at least two {a!r} and two {b!r} participants "
                         f"(have {len(x)} and {len(y)})")
    rows = [{"group": g, "n": len(v), "mean_gap": v.mean(), "sd_gap": v.std(ddof=1)} for g, v in ((a, x), (b, y))]
    welch = stats.ttest_ind(x, y, equal_var=False)
    ci = welch.confidence_interval(0.95)
    d_low, d_high = bootstrap_d(x, y, n_boot, seed)
    diff = {"group": f"{a}-{b}", "n": len(x) + len(y), "mean_gap": x.mean() - y.mean(),
            "ci_low": ci.low, "ci_high": ci.high, "p": welch.pvalue, "cohens_d": cohens_d(x, y),
            "d_ci_low": d_low, "d_ci_high": d_high}
    if adjust:
        diff.update(_adjusted(df.rename(columns={value: "g", group: "grp"}), a, b, adjust))
    return pd.DataFrame(rows + [diff]).set_index("group")


def _adjusted(d: pd.DataFrame, a: str, b: str, adjust: str) -> dict[str, float]:
    """The ``a`` - ``b`` term of OLS ``g ~ C(grp, Treatment(b)) + <adjust>``, its 95% CI and p."""
    import statsmodels.formula.api as smf

    fit = smf.ols(f"g ~ C(grp, Treatment({b!r})) + {adjust}", d).fit()
    term = f"C(grp, Treatment({b!r}))[T.{a}]"
    low, high = fit.conf_int().loc[term]
    return {"adjusted": fit.params[term], "adj_ci_low": low, "adj_ci_high": high, "adj_p": fit.pvalues[term]}
