"""Region and network summaries of attributions, their stability across folds, and their agreement
with the ground truth of a synthetic cohort.

Region importance is averaged over held-out participants. Agreement with the truth is measured as
the AUROC of the importance ranking for the regions where aging was injected (structural hotspots;
regions of the networks whose connectivity declines fastest), and as the Spearman correlation with the
injected effect size. A random ranking has AUROC 0.5: the permutation column gives the 95th
percentile of AUROC under random rankings of the same regions, the bar a real finding must clear.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from amage_core.interpret.attributions import Attributions

MEASURES = {"roi_ig": "fMRI IG", "roi_score": "fMRI node weight", "t1_ig_region": "T1 IG"}


def region_table(attr: Attributions, regions: pd.DataFrame) -> pd.DataFrame:
    """Mean importance per atlas region (rows of ``regions``) for each available measure."""
    table = regions[["name", "network"]].copy()
    for key, label in MEASURES.items():
        values = attr.get(key)
        if values is not None and values.shape[1] == len(regions):
            table[label] = np.nanmean(values, axis=0)
    return table


def network_table(table: pd.DataFrame) -> pd.DataFrame:
    """Region importance averaged within each functional network, ranked by the first measure."""
    measures = [c for c in MEASURES.values() if c in table]
    out = table.groupby("network")[measures].mean()
    return out.sort_values(measures[0], ascending=False) if measures else out


def fold_stability(attr: Attributions, key: str) -> float | None:
    """Mean pairwise Spearman correlation between folds of the region importance ``key``."""
    values = attr.get(key)
    if values is None:
        return None
    folds = np.asarray(attr.fold)
    per_fold = [np.nanmean(values[folds == f], axis=0) for f in sorted(set(folds))]
    pairs = [stats.spearmanr(a, b, nan_policy="omit").statistic for a, b in itertools.combinations(per_fold, 2)]
    return float(np.mean(pairs)) if pairs else None


def _auroc_vs_random(score: np.ndarray, truth: np.ndarray, n_perm: int, rng) -> tuple[float, float]:
    ok = np.isfinite(score)
    score, truth = score[ok], truth[ok].astype(bool)
    auc = roc_auc_score(truth, score)
    null = [roc_auc_score(truth, rng.permutation(score)) for _ in range(n_perm)]
    return float(auc), float(np.percentile(null, 95))


def truth_agreement(table: pd.DataFrame, truth_regions: pd.DataFrame, n_perm: int = 1000, seed: int = 0
                    ) -> pd.DataFrame:
    """How well region importance recovers the injected aging (see the module docstring).

    ``truth_regions`` is ``regions_truth.tsv`` of the synthetic cohort (joined on region name)."""
    rng = np.random.default_rng(seed)
    merged = table.merge(truth_regions.drop(columns=["network"]), on="name", how="inner")
    if merged.empty:
        raise ValueError("no region of the attribution table matches the truth table (different atlas?)")
    decline = merged["fmri_loading_decline_per_decade"].to_numpy(dtype=float)
    targets = {
        "T1 IG": ("structural hotspot regions", merged["smri_hotspot"].astype(bool).to_numpy(),
                  merged["smri_gm_loss_per_decade"].to_numpy(dtype=float)),
        "fMRI IG": ("regions of fast-declining networks", decline > np.median(decline), decline),
        "fMRI node weight": ("regions of fast-declining networks", decline > np.median(decline), decline),
    }
    rows = []
    for measure, (label, positive, effect) in targets.items():
        if measure not in merged or positive.all() or not positive.any():
            continue
        score = merged[measure].to_numpy(dtype=float)
        auc, null95 = _auroc_vs_random(score, positive, n_perm, rng)
        rho = stats.spearmanr(score, effect, nan_policy="omit").statistic
        rows.append({"measure": measure, "truth": label, "AUROC": auc, "random AUROC (95th pct)": null95,
                     "Spearman with effect size": float(rho), "regions": int(np.isfinite(score).sum())})
    return pd.DataFrame(rows).set_index("measure").round(3)
