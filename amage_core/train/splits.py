"""Subject-level splits: outer K-fold stratified by age, inner validation split, age bins.

A participant with several sessions (rows) is one *subject*: all its rows go to the same fold and
the same side of the inner split, so no person is ever both trained on and tested on. Subjects are
stratified on quantile bins of their (mean) age with scikit-learn's ``StratifiedKFold`` and
``train_test_split``, shuffled with the run's seed, so every fold spans the whole age range.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from amage_core.config import validation_parts


def age_bins(ages: np.ndarray, n_bins: int) -> np.ndarray:
    """(N,) equal-count age bins 0..n_bins-1 (by age rank; ties broken by order), sizes differ by <= 1."""
    ages = np.asarray(ages, dtype=float)
    n = len(ages)
    if n_bins <= 1 or n < 2:
        return np.zeros(n, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(ages, kind="stable")] = np.arange(n)
    return (rank * min(n_bins, n)) // n


def _subjects(participants: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: participant_id and mean age, in order of first appearance."""
    grouped = participants.groupby("participant_id", sort=False)["age"].mean()
    return grouped.reset_index()


def assign_folds(participants: pd.DataFrame, n_folds: int, seed: int, n_bins: int = 10) -> pd.DataFrame:
    """Outer folds: a table ``participant_id, fold`` with one row per subject, fold in 0..n_folds-1.

    Stratified on age bins; the number of bins is reduced so every bin holds at least ``n_folds``
    subjects (``StratifiedKFold`` needs that to put each bin in every fold).
    """
    subjects = _subjects(participants)
    n = len(subjects)
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds (got {n_folds})")
    if n < n_folds:
        raise ValueError(f"{n_folds}-fold cross-validation needs at least {n_folds} subjects (have {n})")
    bins = age_bins(subjects["age"].to_numpy(), max(1, min(n_bins, n // n_folds)))
    folds = np.empty(n, dtype=np.int64)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(skf.split(np.zeros(n), bins)):
        folds[test] = k
    return pd.DataFrame({"participant_id": subjects["participant_id"].to_numpy(), "fold": folds})


def inner_split(participants: pd.DataFrame, rows: np.ndarray, val_fraction: float, seed: int,
                n_bins: int = 10, part: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split cohort ``rows`` (a training fold) into (fit rows, validation rows) at subject level.

    The validation part holds about ``val_fraction`` of the subjects, stratified on age bins.
    ``part`` chooses one of the ``floor(1 / val_fraction)`` disjoint validation parts the subjects
    are split into (drawn one after the other from the subjects left, the last taking everyone
    left), so that runs with parts 0, 1, ... hold out every subject once (cross-fitting); part 0
    is the first draw. Returned arrays are sorted row indices into ``participants``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    table = participants.iloc[rows]
    subjects = _subjects(table)
    n = len(subjects)
    n_val = int(round(val_fraction * n))
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} leaves no fit or no validation subject among {n}")
    n_parts = validation_parts(val_fraction)
    if not 0 <= part < n_parts:
        raise ValueError(f"validation part {part}: val_fraction={val_fraction} splits the subjects into "
                         f"{n_parts} disjoint parts (0..{n_parts - 1})")
    if part and (n_parts - 1) * n_val >= n:
        raise ValueError(f"{n} subjects are too few for {n_parts} validation parts of {n_val}")
    left = subjects
    for j in range(part + 1):
        if j and j == n_parts - 1:
            val_ids = left["participant_id"].to_numpy()
            break
        val_ids = _draw(left, n_val, seed, n_bins)
        left = left[~left["participant_id"].isin(set(val_ids))]
    is_val = table["participant_id"].isin(set(val_ids)).to_numpy()
    return np.sort(rows[~is_val]), np.sort(rows[is_val])


def _draw(subjects: pd.DataFrame, n_val: int, seed: int, n_bins: int) -> np.ndarray:
    """``n_val`` participant ids of ``subjects`` drawn at random, stratified on age bins."""
    n = len(subjects)
    n_bins = max(1, min(n_bins, n_val, (n - n_val), n // 2))
    bins = age_bins(subjects["age"].to_numpy(), n_bins)
    _, val_ids = train_test_split(subjects["participant_id"].to_numpy(), test_size=n_val,
                                  random_state=seed, stratify=bins if n_bins > 1 else None)
    return val_ids


def fold_rows(participants: pd.DataFrame, folds: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, test rows) of cohort ``participants`` for outer ``fold`` of a ``folds`` table."""
    lookup = dict(zip(folds["participant_id"].astype(str), folds["fold"].astype(str)))
    ids = participants["participant_id"].astype(str)
    missing = sorted(set(ids) - set(lookup))
    if missing:
        raise ValueError(f"{len(missing)} participant(s) have no fold (e.g. {missing[:3]})")
    is_test = (ids.map(lookup) == str(fold)).to_numpy()
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def participant_keys(participants: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
    """(N,) str keys naming each person across cohorts: ``cohort/participant_id`` (or the id alone).

    Scalers and bias corrections record these keys, so two cohorts that reuse ids (``sub-0001``)
    are never mistaken for the same person.
    """
    part = participants if rows is None else participants.iloc[np.asarray(rows, dtype=np.int64)]
    ids = part["participant_id"].astype(str)
    if "cohort" in part:
        ids = part["cohort"].astype(str) + "/" + ids
    return ids.to_numpy()
