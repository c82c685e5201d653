"""Fold assignment: subject-level, disjoint, stratified by age, reproducible."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from amage_core.config import validation_parts
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


@settings(max_examples=25, deadline=None)
@given(n=st.integers(10, 90), sessions=st.integers(1, 2), seed=st.integers(0, 1000), val=st.floats(0.1, 0.45))
def test_validation_parts_hold_out_every_subject_once(n, sessions, seed, val):
    part = _participants(n, seed, sessions)
    rows = np.arange(len(part))
    ids = part["participant_id"].to_numpy()
    n_val, n_parts = round(val * n), validation_parts(val)
    assume((n_parts - 1) * n_val < n)      # else too few subjects for the parts: an error (below)
    held = [inner_split(part, rows, val, seed, part=j) for j in range(n_parts)]
    # part 0 is the plain inner split; the parts are disjoint, each subject's sessions on one side,
    # each about val_fraction of the subjects, and together they hold out every subject once
    assert all(np.array_equal(a, b) for a, b in zip(held[0], inner_split(part, rows, val, seed)))
    subjects = [set(ids[v]) for _, v in held]
    assert sum(len(s) for s in subjects) == n and set().union(*subjects) == set(ids)
    assert all(not set(ids[f]) & set(ids[v]) for f, v in held)
    assert all(len(s) == n_val for s in subjects[:-1]) and len(subjects[-1]) > 0
    with pytest.raises(ValueError, match=f"validation part {n_parts}: .* {n_parts} disjoint parts"):
        inner_split(part, rows, val, seed, part=n_parts)


def test_too_few_subjects_for_the_validation_parts_is_an_error():
    with pytest.raises(ValueError, match="11 subjects are too few for 7 validation parts of 2"):
        inner_split(_participants(11, 0), np.arange(11), 0.14, 0, part=1)


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
