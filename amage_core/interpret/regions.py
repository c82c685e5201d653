"""Region and network summaries of attributions, their stability across folds and training seeds,
their agreement with the ground truth of a synthetic cohort, and their differences between the sexes.

Region importance is averaged over held-out participants. Agreement with the truth is measured as
the AUROC of the importance ranking for the regions where aging was injected (structural hotspots;
regions of the networks whose connectivity declines fastest), and as the Spearman correlation with the
injected effect size. A random ranking has AUROC 0.5: the permutation column gives the 95th
percentile of AUROC under random rankings of the same regions, the bar a real finding must clear.

The fMRI truth is set per network (every region of a network ages alike), and the hierarchical GAT
pools each network's regions with weights summing to one, so a region's fMRI importance shrinks with
its network's size: the region-level check is confounded by network size, and its random-ranking bar
(regions exchangeable) is too low for scores that cluster by network. :func:`network_agreement`
checks the fMRI measures at the level the truth is set: each network's summed importance against its
injected decline (Spearman), with the exact permutation null over the networks.

Integrated Gradients' own check: :func:`convergence_table` (captum's convergence delta per participant).

Stability: :func:`fold_stability` compares the folds of one run (each explains its own held-out
participants), :func:`seed_stability` runs trained with different seeds (other folds, other
initialisations) that each explain every participant.

Sexes (:func:`sex_difference`): the region rankings of models trained on one sex each are compared
(Spearman), and on a synthetic cohort the male-minus-female difference of the rankings is checked
against the regions where aging was injected faster in males (``smri_male_rate_ratio``,
``fmri_male_decline_ratio`` of ``regions_truth.tsv``).
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from amage_core.interpret.attributions import Attributions

MEASURES = {"roi_ig": "fMRI IG", "roi_score": "fMRI node weight", "t1_ig_region": "T1 IG",
            "t1_occlusion_region": "T1 occlusion"}
MODALITY = {"fMRI IG": "fmri", "fMRI node weight": "fmri", "T1 IG": "smri", "T1 occlusion": "smri"}
# regions_truth.tsv: a region ages "faster in males" above this male/female rate ratio (T1) or above 1 (fMRI)
MALE_FASTER_RATIO = 1.05


def _find(attrs, key: str) -> np.ndarray | None:
    """``key`` from the first of ``attrs`` (one Attributions or several) that has it."""
    for attr in [attrs] if isinstance(attrs, Attributions) else attrs:
        if attr.get(key) is not None:
            return attr.get(key)
    return None


def region_table(attr: Attributions, regions: pd.DataFrame, *others: Attributions) -> pd.DataFrame:
    """Mean importance per atlas region (rows of ``regions``) for each available measure of ``attr``
    and of ``others`` (e.g. the occlusion of :func:`~amage_core.interpret.attributions.compute_occlusion`)."""
    table = regions[["name", "network"]].copy()
    for key, label in MEASURES.items():
        values = _find([attr, *others], key)
        if values is not None and values.shape[1] == len(regions):
            with warnings.catch_warnings():   # a region outside the T1 grid is NaN for everyone
                warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
                table[label] = np.nanmean(values, axis=0)
    return table


def network_table(table: pd.DataFrame) -> pd.DataFrame:
    """Region importance averaged within each functional network, ranked by the first measure."""
    measures = [c for c in MEASURES.values() if c in table]
    out = table.groupby("network")[measures].mean()
    return out.sort_values(measures[0], ascending=False) if measures else out


def convergence_table(runs: Mapping[str, Attributions]) -> pd.DataFrame:
    """How well Integrated Gradients adds up, one row per attribution set (``runs`` maps a label,
    e.g. ``"seed 42"``, to its Attributions): over participants, the median |f(input) - f(baseline)|
    (``ig_change``), the median and largest |convergence delta| (``ig_delta``: the attributions' sum
    minus that change, 0 for exact integration) and the median of their ratio. Sets computed
    without the delta are left out."""
    rows = {}
    for name, attr in runs.items():
        delta, change = attr.get("ig_delta"), attr.get("ig_change")
        if delta is None or change is None:
            continue
        delta, change = np.abs(np.asarray(delta, float)), np.abs(np.asarray(change, float))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(change > 0, delta / change, np.nan)
        rows[name] = {"participants": len(delta), "median |f(x) - f(0)|": float(np.median(change)),
                      "median |delta|": float(np.median(delta)), "max |delta|": float(np.max(delta)),
                      "median |delta| / |f(x) - f(0)|": float(np.nanmedian(ratio)) if np.isfinite(ratio).any()
                      else float("nan")}
    columns = ["participants", "median |f(x) - f(0)|", "median |delta|", "max |delta|",
               "median |delta| / |f(x) - f(0)|"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("attributions")


def _mean_pairwise_spearman(rankings: list[np.ndarray]) -> float | None:
    pairs = [stats.spearmanr(a, b, nan_policy="omit").statistic for a, b in itertools.combinations(rankings, 2)]
    return float(np.mean(pairs)) if pairs else None


def fold_stability(attr: Attributions, key: str) -> float | None:
    """Mean pairwise Spearman correlation between folds of the region importance ``key``."""
    values = attr.get(key)
    if values is None:
        return None
    folds = np.asarray(attr.fold)
    return _mean_pairwise_spearman([np.nanmean(values[folds == f], axis=0) for f in sorted(set(folds))])


def seed_stability(runs, key: str) -> float | None:
    """Mean pairwise Spearman correlation of the region importance ``key`` (mean over each run's
    participants) between runs trained with different seeds; ``None`` with fewer than two runs
    having ``key``. Each element of ``runs`` is one run's Attributions (or a list of them)."""
    found = [v for v in (_find(r, key) for r in runs) if v is not None]
    return _mean_pairwise_spearman([np.nanmean(v, axis=0) for v in found]) if len(found) > 1 else None


def stability_table(runs: Mapping[str, Attributions | Sequence[Attributions]]) -> pd.DataFrame:
    """One row per measure: its fold stability within each run (``runs`` maps a label, e.g.
    ``"seed 42"``, to the run's Attributions or a list of them) and its stability across the runs."""
    rows = {}
    for key, label in MEASURES.items():
        row = {}
        for name, attrs in runs.items():
            for attr in [attrs] if isinstance(attrs, Attributions) else attrs:
                if attr.get(key) is not None:
                    row[f"across folds ({name})"] = fold_stability(attr, key)
                    break
        if row:
            row["across seeds"] = seed_stability(list(runs.values()), key)
            rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("measure").astype(float).round(3)


def _auroc_vs_random(score: np.ndarray, truth: np.ndarray, n_perm: int, rng) -> tuple[float, float]:
    """AUROC of ``score`` for ``truth`` and the 95th percentile of its null over ``n_perm`` random
    permutations of the scores. The AUROC is the Mann-Whitney statistic on average ranks (equal to
    ``sklearn.metrics.roc_auc_score``, ties included), and permuting the scores permutes their ranks,
    so the null takes one matrix product instead of ``n_perm`` calls (8 s for 1000 of them)."""
    ok = np.isfinite(score)
    score, truth = score[ok], truth[ok].astype(bool)
    ranks = stats.rankdata(score)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())

    def auroc(rank_sums: np.ndarray) -> np.ndarray:
        return (rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    perms = np.stack([rng.permutation(len(score)) for _ in range(n_perm)])     # (n_perm, n)
    null = auroc(ranks[perms] @ truth.astype(float))
    return float(auroc(ranks @ truth.astype(float))), float(np.percentile(null, 95))


def _with_truth(table: pd.DataFrame, truth_regions: pd.DataFrame) -> pd.DataFrame:
    merged = table.merge(truth_regions.drop(columns=["network"]), on="name", how="inner")
    if merged.empty:
        raise ValueError("no region of the attribution table matches the truth table (different atlas?)")
    return merged


def truth_agreement(table: pd.DataFrame, truth_regions: pd.DataFrame, n_perm: int = 1000, seed: int = 0,
                    sex: str | None = None) -> pd.DataFrame:
    """How well region importance recovers the injected aging (see the module docstring).

    ``truth_regions`` is ``regions_truth.tsv`` of the synthetic cohort (joined on region name).
    ``sex="M"`` takes the males' effect sizes (the injected rates times the male/female ratios), for
    a model trained on males only; the default (and ``"F"``) the females' rates, the reference ones."""
    rng = np.random.default_rng(seed)
    merged = _with_truth(table, truth_regions)
    male = sex == "M"
    gm_loss = merged["smri_gm_loss_per_decade"].to_numpy(dtype=float)
    decline = merged["fmri_loading_decline_per_decade"].to_numpy(dtype=float)
    if male:
        gm_loss = gm_loss * merged["smri_male_rate_ratio"].to_numpy(dtype=float)
        decline = decline * merged["fmri_male_decline_ratio"].to_numpy(dtype=float)
    hotspot = ("structural hotspot regions", merged["smri_hotspot"].astype(bool).to_numpy(), gm_loss)
    fast = ("regions of fast-declining networks", decline > np.median(decline), decline)
    targets = {m: hotspot if modality == "smri" else fast for m, modality in MODALITY.items()}
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


def network_tables(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`network_table` of several region tables side by side (e.g. one per sex): columns
    (measure, table label), networks ranked by the first measure of the first table."""
    out = pd.concat({name: network_table(t) for name, t in tables.items()}, axis=1)
    out = out.swaplevel(axis=1)
    measures = [m for m in MEASURES.values() if m in out.columns.get_level_values(0)]
    out = out[[(m, name) for m in measures for name in tables if (m, name) in out]]
    return out.sort_values(out.columns[0], ascending=False) if len(out.columns) else out


def sex_difference(tables: Mapping[str, pd.DataFrame], truth_regions: pd.DataFrame | None = None,
                   n_perm: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Region importance of models trained on females (``tables["F"]``) and on males (``tables["M"]``).

    Per measure: the Spearman correlation of the two rankings, and with ``truth_regions`` (a synthetic
    cohort's ``regions_truth.tsv``) whether the male-minus-female difference of the rankings
    (percentile ranks) picks out the regions where aging was injected faster in males: AUROC against
    a random ranking's 95th percentile, and the Spearman correlation with the injected male excess
    (the female rate times the ratio minus one)."""
    rng = np.random.default_rng(seed)
    f, m = tables["F"], tables["M"]
    both = f.merge(m, on=["name", "network"], suffixes=(" F", " M"))
    if truth_regions is not None:
        both = _with_truth(both, truth_regions)
        excess = {
            "smri": (both["smri_male_rate_ratio"].to_numpy(dtype=float) > MALE_FASTER_RATIO,
                     both["smri_gm_loss_per_decade"] * (both["smri_male_rate_ratio"] - 1)),
            "fmri": (both["fmri_male_decline_ratio"].to_numpy(dtype=float) > 1.0,
                     both["fmri_loading_decline_per_decade"] * (both["fmri_male_decline_ratio"] - 1)),
        }
    rows = []
    for measure in MEASURES.values():
        if f"{measure} F" not in both or f"{measure} M" not in both:
            continue
        sf, sm = both[f"{measure} F"], both[f"{measure} M"]
        row = {"measure": measure, "Spearman F vs M": float(stats.spearmanr(sf, sm, nan_policy="omit").statistic)}
        if truth_regions is not None:
            positive, effect = excess[MODALITY[measure]]
            diff = (sm.rank(pct=True) - sf.rank(pct=True)).to_numpy(dtype=float)
            if positive.any() and not positive.all():
                auc, null95 = _auroc_vs_random(diff, positive, n_perm, rng)
                row.update({"truth": f"regions aging faster in males ({int(positive.sum())})",
                            "AUROC (M - F ranks)": auc, "random AUROC (95th pct)": null95,
                            "Spearman with male excess": float(stats.spearmanr(
                                diff, effect, nan_policy="omit").statistic)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("measure").round(3)


def network_agreement(table: pd.DataFrame, truth_regions: pd.DataFrame, n_perm: int = 5000, seed: int = 0
                      ) -> pd.DataFrame:
    """fMRI measures against the injected network decline, at the network level (module docstring).

    Per fMRI measure: Spearman of each network's summed region importance with its injected loading
    decline per decade, the permutation p-value (all orderings of the networks when there are at most
    8, else ``n_perm`` random ones) and the permutation null's 95th percentile."""
    merged = _with_truth(table, truth_regions)
    decline = merged.groupby("network")["fmri_loading_decline_per_decade"].first()
    rows = []
    for measure, modality in MODALITY.items():
        if modality != "fmri" or measure not in merged:
            continue
        score = merged.groupby("network")[measure].sum().reindex(decline.index).to_numpy(dtype=float)
        effect = decline.to_numpy(dtype=float)
        rho = stats.spearmanr(score, effect).statistic
        if len(score) <= 8:
            null = [stats.spearmanr(np.asarray(p), effect).statistic for p in itertools.permutations(score)]
        else:
            rng = np.random.default_rng(seed)
            null = [stats.spearmanr(rng.permutation(score), effect).statistic for _ in range(n_perm)]
        null = np.asarray(null)
        rows.append({"measure": measure, "truth": "network loading decline per decade",
                     "networks": len(score), "Spearman": float(rho),
                     "random Spearman (95th pct)": float(np.nanpercentile(null, 95)),
                     "permutation p": float(np.mean(null >= rho - 1e-12))})
    return pd.DataFrame(rows).set_index("measure").round(3)
