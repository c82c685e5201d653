"""Figures shared by the chapters (seaborn / matplotlib). Each function returns a Figure.

Inputs are the run directory's products (book/architecture.md section 3): ``predictions.tsv`` as a
DataFrame (participant_id, fold, age, predicted_age, predicted_age_corrected, [sex], [gate_*]) and the
per-fold ``history.csv`` tables.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

sns.set_theme(context="notebook", style="whitegrid")


def predicted_vs_age(predictions: Mapping[str, pd.DataFrame], corrected: bool = False) -> plt.Figure:
    """Predicted against chronological age, one panel per model, identity line dashed."""
    column = "predicted_age_corrected" if corrected else "predicted_age"
    n = len(predictions)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False, sharex=True, sharey=True)
    for ax, (name, df) in zip(axes[0], predictions.items()):
        sns.scatterplot(data=df, x="age", y=column, hue="sex" if "sex" in df else None, s=14,
                        alpha=0.7, ax=ax, edgecolor="none")
        lo, hi = float(df["age"].min()), float(df["age"].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xlabel="chronological age (years)", ylabel=f"{'corrected ' if corrected else ''}predicted age (years)",
               title=name)
    fig.tight_layout()
    return fig


def brain_age_gap(predictions: pd.DataFrame, name: str = "") -> plt.Figure:
    """The brain-age gap against age before and after bias correction (fit on training folds)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, column, label in zip(axes, ["predicted_age", "predicted_age_corrected"],
                                 ["uncorrected", "bias-corrected"]):
        gap = predictions[column] - predictions["age"]
        sns.regplot(x=predictions["age"], y=gap, ax=ax, scatter_kws={"s": 10, "alpha": 0.6},
                    line_kws={"color": "C3"}, lowess=False)
        ax.axhline(0, color="k", lw=0.8)
        r = np.corrcoef(predictions["age"], gap)[0, 1]
        ax.set(xlabel="chronological age (years)", ylabel="brain-age gap (years)",
               title=f"{name} {label}: r(gap, age) = {r:.2f}".strip())
    fig.tight_layout()
    return fig


def learning_curves(histories: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Training and validation loss per epoch, one line per fold."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (fold, h) in enumerate(histories.items()):
        ax.plot(h["epoch"], h["train_loss"], color=f"C{i}", lw=1.2, label=f"fold {fold} train")
        if "val_loss" in h:
            ax.plot(h["epoch"], h["val_loss"], color=f"C{i}", lw=1.2, ls="--", label=f"fold {fold} validation")
    ax.set(xlabel="epoch", ylabel="MSE (scaled age)", yscale="log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def recipe_curves(curves: pd.DataFrame) -> plt.Figure:
    """Learning curves under the recipe, one panel per model (``train.diagnostics.curves``):
    training loss (solid) and inner-validation loss of the evaluated weights (dashed) per fold, and
    the learning-rate schedule (grey, right axis)."""
    models = list(dict.fromkeys(curves["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = curves[curves["model"] == model]
        for i, (fold, h) in enumerate(part.groupby("fold")):
            ax.plot(h["epoch"], h["train_loss"], color=f"C{i}", lw=1.2, label=f"fold {fold} train")
            if h["val_loss"].notna().any():
                ax.plot(h["epoch"], h["val_loss"], color=f"C{i}", lw=1.2, ls="--", label=f"fold {fold} validation")
        ax.set(xlabel="epoch", ylabel="MSE (standardised age)", yscale="log", title=model)
        lr_ax = ax.twinx()
        first = part[part["fold"] == part["fold"].iloc[0]]
        lr_ax.plot(first["epoch"], first["lr"], color="0.6", lw=1, ls=":")
        lr_ax.set_ylabel("learning rate (dotted)", color="0.4")
        lr_ax.grid(False)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def lr_range(tables: Mapping[str, pd.DataFrame], recipe_lr: float) -> plt.Figure:
    """Learning-rate range tests: smoothed training loss against lr (log), the recipe's lr dashed."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (name, t) in enumerate(tables.items()):
        ax.plot(t["lr"], t["smoothed"], color=f"C{i}", label=name)
    ax.axvline(recipe_lr, color="k", ls="--", lw=1, label=f"recipe lr {recipe_lr:g}")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="training MSE (smoothed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def size_curves(table: pd.DataFrame) -> plt.Figure:
    """MAE (uncorrected) against training-set size, one line per model (``diagnostics.size_table``)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    sns.lineplot(data=table, x="n_train", y="mae", hue="model", marker="o", ax=ax)
    ax.set(xlabel="training participants per fold", ylabel="MAE (years, uncorrected)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_bars(table: pd.DataFrame, metric: str = "mae", reference: Mapping[str, float] | None = None,
                ) -> plt.Figure:
    """A metric per model (rows of ``table``, columns ``<metric>`` and optionally ``<metric>_sd``),
    with horizontal reference lines (e.g. the oracle bounds)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(table) + 2), 3.8))
    order = table.sort_values(metric).index
    err = table.loc[order, f"{metric}_sd"] if f"{metric}_sd" in table else None
    ax.bar(range(len(order)), table.loc[order, metric], yerr=err, color="C0", capsize=3)
    ax.set_xticks(range(len(order)), order, rotation=35, ha="right")
    for i, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=f"C{i + 1}", ls="--", lw=1, label=f"{label} ({value:.2f})")
    if reference:
        ax.legend(fontsize=8)
    ax.set(ylabel=metric.upper() + " (years)" if metric in {"mae", "rmse"} else metric)
    fig.tight_layout()
    return fig


def gate_by_age(predictions: pd.DataFrame) -> plt.Figure:
    """Mean gate value per participant (columns ``gate_*``) against age, by sex, with LOWESS lines."""
    gates = [c for c in predictions.columns if c.startswith("gate_")]
    if not gates:
        raise ValueError("these predictions carry no gate values (a model without a gate?)")
    df = predictions.assign(gate=predictions[gates].mean(axis=1))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    hue = "sex" if "sex" in df else None
    sns.scatterplot(data=df, x="age", y="gate", hue=hue, s=14, alpha=0.6, ax=ax, edgecolor="none")
    for i, (sex, sub) in enumerate(df.groupby("sex") if hue else [("all", df)]):
        sns.regplot(data=sub, x="age", y="gate", lowess=True, scatter=False, ax=ax, color=f"C{i}")
    ax.set(xlabel="chronological age (years)", ylabel="mean gate (fMRI weight)")
    fig.tight_layout()
    return fig


def _label_colorbar(fig: plt.Figure, units: str | None) -> None:
    """Name the units on the colour bar nilearn adds as the figure's last axes."""
    if units:
        fig.axes[-1].set_ylabel(units, fontsize=8)


def region_markers(regions: pd.DataFrame, values: np.ndarray, label: str, top: int | None = None,
                   units: str | None = None):
    """Atlas regions as markers on a glass brain, coloured and sized by ``values`` (R,), the colour
    bar labelled with ``units``.

    ``top`` keeps only the most important regions. Regions without coordinates are skipped."""
    from nilearn import plotting

    ok = np.isfinite(values) & regions[["x", "y", "z"]].notna().all(axis=1).to_numpy()
    order = np.argsort(values[ok])[::-1][:top] if top else np.arange(ok.sum())
    coords = regions.loc[ok, ["x", "y", "z"]].to_numpy(dtype=float)[order]
    vals = values[ok][order]
    fig = plt.figure(figsize=(9, 3.2))
    display = plotting.plot_markers(vals, coords, node_size=20 + 80 * (vals - vals.min()) / (np.ptp(vals) or 1),
                                    node_cmap="viridis", figure=fig, title=label, colorbar=True)
    display.title(label, size=9)
    _label_colorbar(fig, units)
    return fig


def t1_map(volume: np.ndarray, affine: np.ndarray, label: str, threshold_quantile: float = 0.9,
           units: str | None = None):
    """A voxel map on the profile's T1 grid, shown over the MNI152 template (top decile coloured),
    the colour bar labelled with ``units``."""
    import nibabel as nib
    from nilearn import plotting
    from nilearn.datasets import load_mni152_template

    img = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine)
    fig = plt.figure(figsize=(9, 3.2))
    plotting.plot_stat_map(img, bg_img=load_mni152_template(resolution=2), figure=fig, title=label,
                           threshold=float(np.quantile(volume[volume > 0], threshold_quantile)),
                           display_mode="ortho", cmap="hot", colorbar=True, draw_cross=False)
    _label_colorbar(fig, units)
    return fig


def sex_trajectories(curves: pd.DataFrame, predictions: pd.DataFrame, ylabel: str = "brain-age gap (years)"):
    """LOWESS trajectories per sex (from :func:`amage_core.stats.sex.lowess_trajectories`) over the
    participants' points."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    gap = predictions["predicted_age_corrected"] - predictions["age"]
    sns.scatterplot(x=predictions["age"], y=gap, hue=predictions["sex"], s=12, alpha=0.4, ax=ax,
                    edgecolor="none", hue_order=["F", "M"])
    for i, (sex, c) in enumerate(curves.groupby("sex")):
        ax.plot(c["age"], c["value"], color=f"C{i}", lw=2.2, label=f"{sex} (LOWESS)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="chronological age (years)", ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def group_gaps(tables: Mapping[str, pd.DataFrame], column: str = "gap_corrected", group: str = "dx",
               order: tuple[str, ...] = ("control", "autism")) -> plt.Figure:
    """Brain-age gap distributions per group (e.g. control vs autism), one box pair per model.

    ``tables`` maps a model label to a table with ``column`` (the gap, years) and ``group``."""
    df = pd.concat([t[[column, group]].assign(model=name) for name, t in tables.items()], ignore_index=True)
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(tables) + 2), 3.8))
    sns.boxplot(data=df, x="model", y=column, hue=group, hue_order=list(order), ax=ax, fliersize=2)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="", ylabel=f"brain-age gap{' (bias-corrected)' if 'corrected' in column else ''} (years)")
    ax.tick_params(axis="x", rotation=25)
    fig.tight_layout()
    return fig
