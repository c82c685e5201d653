"""Site-held-out folds (no data needed): every site in one fold, mapping other participants by site."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amage_core.evaluate.sites import check_site_separation, fold_site_table, folds_for_sites, site_folds


def participants(sizes: dict[str, int]) -> pd.DataFrame:
    rows = [(f"sub-{s}{i:02d}", s, 10.0 + i) for s, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["participant_id", "site", "age"])


def test_sites_never_span_two_folds_and_folds_are_balanced():
    part = participants({"A": 30, "B": 25, "C": 20, "D": 12, "E": 10, "F": 8, "G": 5})
    folds = site_folds(part, 3)
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    assert (folds.groupby("site")["fold"].nunique() == 1).all()
    assert set(folds["participant_id"]) == set(part["participant_id"])
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 10                 # GroupKFold balances the fold sizes
    assert site_folds(part, 3).equals(folds)              # deterministic


def test_more_folds_than_sites_is_leave_one_site_out():
    part = participants({"A": 4, "B": 3, "C": 5})
    for n_folds in (3, 10, None):
        folds = site_folds(part, n_folds)
        assert folds.groupby("fold")["site"].nunique().eq(1).all() and folds["fold"].nunique() == 3


def test_site_fold_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least two sites"):
        site_folds(participants({"A": 5}), 2)
    part = participants({"A": 3, "B": 3})
    part.loc[1, "site"] = np.nan
    with pytest.raises(ValueError, match="without a site.*sub-A01"):
        site_folds(part, 2)
    with pytest.raises(ValueError, match="several folds"):
        check_site_separation(pd.DataFrame({"participant_id": ["a", "b"], "site": ["X", "X"], "fold": [0, 1]}))


def test_other_participants_follow_their_site_and_unknown_sites_get_no_fold():
    folds = site_folds(participants({"A": 4, "B": 4, "C": 4}), 3)
    others = pd.DataFrame({"participant_id": ["x1", "x2", "x3"], "site": ["B", "Z", "A"]})
    mapped = folds_for_sites(others, folds).set_index("participant_id")["fold"]
    lookup = folds.drop_duplicates("site").set_index("site")["fold"]
    assert mapped["x1"] == lookup["B"] and mapped["x3"] == lookup["A"] and mapped["x2"] == -1


def test_fold_site_table_lists_sites_and_ages():
    part = participants({"A": 4, "B": 2, "C": 3})
    table = fold_site_table(site_folds(part, 3), part)
    assert table["n"].sum() == 9 and set(", ".join(table["sites"]).split(", ")) == {"A", "B", "C"}
    assert (table["age min"] <= table["age max"]).all()
