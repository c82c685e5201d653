"""Fold assignment: subject-level, disjoint, stratified by age, reproducible."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from amage_core.train.splits import age_bins, assign_folds, fold_rows, inner_split, participant_keys


def _participants(n_subjects: int, seed: int, sessions: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ages = rng.uniform(18, 90, size=n_subjects)
    return pd.DataFrame({
        "participant_id": np.repeat([f"sub-{i:03d}" for i in range(n_subjects)], sessions),
        "age": np.repeat(ages, sessions) + np.tile(np.arange(sessions), n_subjects),
    })


@settings(max_examples=25, deadline=None)
@given(n=st.integers(12, 80), k=st.integers(2, 6), sessions=st.integers(1, 3),
       seed=st.integers(0, 1000), val=st.floats(0.1, 0.4))
def test_outer_and_inner_splits_never_share_a_participant(n, k, sessions, seed, val):
    part = _participants(n, seed, sessions)
    folds = assign_folds(part, k, seed)
    assert folds["participant_id"].is_unique and len(folds) == n
    assert set(folds["fold"]) == set(range(k))
    tested = []
    for fold in range(k):
        train, test = fold_rows(part, folds, fold)
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(part)
        ids = part["participant_id"].to_numpy()
        assert not set(ids[train]) & set(ids[test])
        tested.extend(ids[test])
        fit, inner = inner_split(part, train, val, seed)
        assert sorted(np.concatenate([fit, inner])) == sorted(train)
        assert not set(ids[fit]) & set(ids[inner])       # sessions stay on one side
        assert not set(ids[inner]) & set(ids[test])      # inner validation never touches the test fold
    assert sorted(tested) == sorted(part["participant_id"])   # every row tested exactly once


def test_folds_are_age_stratified_and_reproducible():
    part = _participants(100, 0)
    folds = assign_folds(part, 5, seed=3)
    assert folds.equals(assign_folds(part, 5, seed=3))
    assert not folds.equals(assign_folds(part, 5, seed=4))
    ages = part.set_index("participant_id")["age"]
    means = folds.assign(age=folds["participant_id"].map(ages)).groupby("fold")["age"].mean()
    # stratified: fold means within a few years of the overall mean (random folds spread ~6 years)
    assert (means - ages.mean()).abs().max() < 3.0


def test_age_bins_are_balanced_even_with_ties():
    bins = age_bins(np.array([30.0] * 10 + [60.0] * 10), 4)
    assert np.bincount(bins).tolist() == [5, 5, 5, 5]


def test_participant_keys_tell_cohorts_apart():
    a = pd.DataFrame({"participant_id": ["sub-1"], "cohort": ["camcan-like"]})
    b = pd.DataFrame({"participant_id": ["sub-1"], "cohort": ["oasis3-like"]})
    assert participant_keys(a)[0] != participant_keys(b)[0]
