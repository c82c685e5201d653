"""Site-held-out folds: whole acquisition sites are tested on, never trained on.

When site is associated with age (ABIDE I: site medians from 9.5 to 27 years), a model can learn
site signatures as age; mixing a site's participants across training and test folds rewards that.
Grouping the folds by site measures how well the model does on a site it has never seen.

- :func:`site_folds`: ``participant_id, site, fold`` with every site in exactly one fold
  (scikit-learn ``GroupKFold``: sites spread so the folds' sizes are balanced; ``n_folds=None`` or
  at least the number of sites gives leave-one-site-out, one fold per site).
- :func:`folds_for_sites`: the same folds for other participants of those sites (e.g. autism
  participants who are never trained on, but are predicted by the fold model that never saw their site).
- :func:`check_site_separation`: raises when a site appears on both sides of a fold.
- :func:`fold_site_table`: one row per fold: its sites, number of participants and age range.

The fold tables are what ``cross_validate(..., assignment=...)`` and ``run_baseline(..., assignment=...)``
take.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def site_folds(participants: pd.DataFrame, n_folds: int | None = 5, site_column: str = "site") -> pd.DataFrame:
    """``participant_id, site, fold`` (fold as int 0..K-1) with each site in exactly one fold.

    ``participants`` needs ``participant_id`` and ``site_column``. Deterministic: ``GroupKFold``
    puts the largest sites first into the currently smallest fold. Raises when fewer than two sites.
    """
    from sklearn.model_selection import GroupKFold

    missing = {"participant_id", site_column} - set(participants.columns)
    if missing:
        raise ValueError(f"site folds need column(s) {sorted(missing)} in the participants table")
    table = participants[["participant_id", site_column]].drop_duplicates("participant_id")
    no_site = table[site_column].isna() | (table[site_column].astype(str).str.strip() == "")
    if no_site.any():
        bad = table.loc[no_site, "participant_id"].head(3).tolist()
        raise ValueError(f"participant(s) without a site (e.g. {bad}): cannot hold sites out")
    sites = table[site_column].astype(str).to_numpy()
    n_sites = len(set(sites))
    if n_sites < 2:
        raise ValueError(f"site-held-out folds need at least two sites (have {n_sites})")
    k = n_sites if n_folds is None or n_folds >= n_sites else n_folds
    if k < 2:
        raise ValueError(f"n_folds must be at least 2 (got {n_folds})")
    folds = np.empty(len(table), dtype=np.int64)
    for fold, (_, test) in enumerate(GroupKFold(n_splits=k).split(np.zeros(len(table)), groups=sites)):
        folds[test] = fold
    out = pd.DataFrame({"participant_id": table["participant_id"].astype(str).to_numpy(),
                        "site": sites, "fold": folds})
    check_site_separation(out)
    return out


def folds_for_sites(participants: pd.DataFrame, folds: pd.DataFrame,
                    site_column: str = "site") -> pd.DataFrame:
    """``participant_id, site, fold`` for ``participants`` using the site -> fold map of ``folds``.

    Participants of a site that no fold holds get fold ``-1`` (no model held their site out)."""
    lookup = dict(zip(folds["site"].astype(str), folds["fold"]))
    sites = participants[site_column].astype(str)
    return pd.DataFrame({"participant_id": participants["participant_id"].astype(str).to_numpy(),
                         "site": sites.to_numpy(),
                         "fold": sites.map(lookup).fillna(-1).astype(np.int64).to_numpy()})


def check_site_separation(folds: pd.DataFrame) -> None:
    """Raise ``ValueError`` when a site is in more than one fold (it would be trained and tested on)."""
    per_site = folds.groupby("site")["fold"].nunique()
    shared = per_site[per_site > 1]
    if len(shared):
        raise ValueError(f"site(s) {list(shared.index[:5])} appear in several folds: "
                         "their participants would be both trained and tested on")


def fold_site_table(folds: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    """One row per fold: sites held out, n, and the age median and range of its participants."""
    df = folds.merge(participants[["participant_id", "age"]].astype({"participant_id": str}),
                     on="participant_id", how="left", validate="one_to_one")
    rows = []
    for fold, sub in df.groupby("fold"):
        rows.append({"fold": fold, "sites": ", ".join(sorted(sub["site"].unique())), "n": len(sub),
                     "age median": sub["age"].median(), "age min": sub["age"].min(),
                     "age max": sub["age"].max()})
    return pd.DataFrame(rows).set_index("fold").round(1)
