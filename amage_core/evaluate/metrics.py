"""Brain-age metrics: MAE, RMSE, R2, Pearson r and the correlation of the brain-age gap with age
(Pearson and Spearman).

Accuracy is always read from the **uncorrected** predictions (de Lange et al. 2022; Butler et al.
2021): the age-dependent bias correction (``predicted_age_corrected``, the offset form fit on
training participants) uses each test participant's own age when applied, so its MAE, R² and r
flatter any model, down to a constant predictor scoring near 0. The corrected predictions are for
brain-age-gap analyses only (group differences such as sex or autism), and ``metrics.json`` keeps
them under ``corrected`` for those, never to be shown as accuracy.

:func:`summarise` turns a run's ``predictions.tsv`` table into ``metrics.json``: for the
uncorrected (``predicted_age``) and bias-corrected (``predicted_age_corrected``) predictions, the
metrics pooled over all test participants, per fold, and their mean and SD (ddof=1) over folds.
Undefined values (a correlation of constant predictions, an SD over one fold) are ``None``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

METRICS = ("mae", "rmse", "r2", "pearson_r", "gap_age_r", "gap_age_spearman")
PREDICTION_COLUMNS = {"uncorrected": "predicted_age", "corrected": "predicted_age_corrected"}


def regression_metrics(age: np.ndarray, predicted: np.ndarray) -> dict[str, float | int | None]:
    """Metrics of ``predicted`` against chronological ``age`` (both (N,) years).

    ``gap_age_r`` is Pearson's r between the brain-age gap (predicted - age) and age: negative
    when old people are under- and young people over-estimated (regression to the mean);
    ``gap_age_spearman`` is the same with Spearman's rank correlation.
    """
    age = np.asarray(age, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if age.shape != predicted.shape or age.ndim != 1 or len(age) == 0:
        raise ValueError(f"age {age.shape} and predicted {predicted.shape} must be equal, non-empty (N,)")
    out: dict[str, float | int | None] = {
        "n": int(len(age)),
        "mae": float(mean_absolute_error(age, predicted)),
        "rmse": float(root_mean_squared_error(age, predicted)),
        "r2": float(r2_score(age, predicted)) if len(age) > 1 else None,
        "pearson_r": _pearson(age, predicted),
        "gap_age_r": _pearson(age, predicted - age),
        "gap_age_spearman": _spearman(age, predicted - age),
    }
    return out


def summarise(predictions: pd.DataFrame) -> dict:
    """``metrics.json`` content from a predictions table (``fold``, ``age``, predicted columns)."""
    fold = predictions["fold"].astype(str)
    folds = sorted(set(fold), key=fold_sort_key)
    out: dict = {"n": int(len(predictions)), "folds": folds}
    for kind, column in PREDICTION_COLUMNS.items():
        per_fold = {
            f: regression_metrics(predictions["age"][fold == f].to_numpy(),
                                  predictions[column][fold == f].to_numpy())
            for f in folds
        }
        out[kind] = {
            "pooled": regression_metrics(predictions["age"].to_numpy(), predictions[column].to_numpy()),
            "fold_mean": {m: _nan_stat(np.mean, [v[m] for v in per_fold.values()]) for m in METRICS},
            "fold_sd": {m: _nan_stat(_sd, [v[m] for v in per_fold.values()]) for m in METRICS},
            "per_fold": per_fold,
        }
    return out


def metrics_table(metrics: dict) -> pd.DataFrame:
    """A tidy table of a ``metrics.json``: one row per (correction, scope), one column per metric."""
    rows = []
    for kind in PREDICTION_COLUMNS:
        section = metrics[kind]
        rows.append({"correction": kind, "scope": "pooled", **{m: section["pooled"].get(m) for m in METRICS}})
        rows.append({"correction": kind, "scope": "fold mean", **{m: section["fold_mean"].get(m) for m in METRICS}})
        rows.append({"correction": kind, "scope": "fold SD", **{m: section["fold_sd"].get(m) for m in METRICS}})
    return pd.DataFrame(rows).astype({m: float for m in METRICS})


def fold_sort_key(name: str) -> tuple:
    """Numbered folds in numeric order ("2" before "10"), named ones ("external") after."""
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(stats.pearsonr(a, b).statistic)


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(stats.spearmanr(a, b).statistic)


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _nan_stat(fn, values: list) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) != len(values) or not finite:
        return None
    value = float(fn(finite))
    return value if math.isfinite(value) else None
