"""Figures of a synthetic cohort for the data chapter; each function returns a matplotlib Figure.

All read the generated files (``participants.tsv``, the fMRIPrep/XCP-D derivatives and
``derivatives/truth``), never the generator's internals, so they show what a user's loader sees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from amage_core.synth.bids import atlas_label, paths

SEX_COLORS = {"F": "#d95f02", "M": "#1b9e77"}


def _participants(root: Path) -> pd.DataFrame:
    return pd.read_csv(Path(root) / "participants.tsv", sep="\t")


def age_sex_figure(root: Path):
    """Histogram of age by sex (stacked), with the counts in the legend."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    p = _participants(root)
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    counts = p["sex"].value_counts()
    p = p.assign(sex=p["sex"].map(lambda s: f"{s} (n={counts[s]})"))
    palette = {f"{s} (n={counts[s]})": c for s, c in SEX_COLORS.items() if s in counts}
    sns.histplot(data=p, x="age", hue="sex", multiple="stack", binwidth=5, palette=palette, ax=ax)
    ax.set_xlabel("age (years)")
    ax.set_ylabel("participants")
    return fig


def t1_slices_figure(root: Path, cut: tuple[float, float, float] = (0.0, -18.0, 10.0)):
    """The T1w of the youngest and the oldest participant (sagittal, coronal, axial through ``cut``)."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    p = _participants(root).sort_values("age")
    picks = [p.iloc[0], p.iloc[-1]]
    fig, axes = plt.subplots(2, 1, figsize=(7, 5), layout="constrained")
    for ax, row in zip(axes, picks):
        t1 = paths(Path(root), row["participant_id"], [])["t1"]
        plotting.plot_anat(str(t1), cut_coords=cut, axes=ax, annotate=False, draw_cross=False,
                           display_mode="ortho", dim=0)
        ax.set_title(f"{row['participant_id']}: {row['age']:.0f} years ({row['sex']})", fontsize=10, loc="left")
    return fig


def mean_connectivity(root: Path, ids: list[str], atlas: str) -> np.ndarray:
    """(R, R) mean Fisher-z correlation over participants ``ids`` from the XCP-D-style TSVs."""
    total = None
    for pid in ids:
        ts = pd.read_csv(paths(Path(root), pid, [atlas])[f"timeseries:{atlas}"], sep="\t").to_numpy(float)
        z = np.arctanh(np.clip(np.corrcoef(ts.T), -0.999999, 0.999999))
        np.fill_diagonal(z, 0.0)
        total = z if total is None else total + z
    return total / len(ids)


def connectivity_figure(root: Path, atlas: str = "dosenbach160", fraction: float = 0.1):
    """Mean connectivity of the youngest and the oldest ``fraction`` of the cohort, and old - young.

    Regions are ordered by network; white lines separate networks.
    """
    import matplotlib.pyplot as plt

    from amage_core.data.atlas import load_atlas

    a = load_atlas(atlas)
    order = np.argsort(a.network_index(), kind="stable")
    p = _participants(root).sort_values("age")
    k = max(1, int(round(fraction * len(p))))
    groups = {"youngest": p.iloc[:k], "oldest": p.iloc[-k:]}
    mats = {name: mean_connectivity(root, list(g["participant_id"]), atlas)[np.ix_(order, order)]
            for name, g in groups.items()}
    mats["oldest - youngest"] = mats["oldest"] - mats["youngest"]
    bounds = np.flatnonzero(np.diff(a.network_index()[order])) + 0.5
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), layout="constrained")
    vmax = max(np.abs(mats["youngest"]).max(), np.abs(mats["oldest"]).max())
    dmax = np.abs(mats["oldest - youngest"]).max()
    for ax, (name, mat) in zip(axes, mats.items()):
        lim = dmax if name.startswith("oldest -") else vmax
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        for b in bounds:
            ax.axhline(b, color="w", lw=0.6)
            ax.axvline(b, color="w", lw=0.6)
        g = groups.get(name)
        label = f"{name} (n={k}, {g['age'].min():.0f}-{g['age'].max():.0f} y)" if g is not None else name
        ax.set_xlabel(label)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8, label="Fisher z")
    starts = np.r_[0, np.ceil(bounds)].astype(int)
    nets = [a.regions["network"].iloc[order[s]] for s in starts]
    axes[0].set_yticks(starts + np.diff(np.r_[starts, len(order)]) / 2 - 0.5, nets, fontsize=7)
    return fig


def effect_map_figure(root: Path):
    """Ground truth: the GM loss-rate map on the template, and the network FC ageing effects."""
    import matplotlib.pyplot as plt
    from nilearn import datasets, plotting

    from amage_core.synth.cohort import load_truth

    truth = load_truth(root)
    fig = plt.figure(figsize=(11, 3.6), layout="constrained")
    grid = fig.add_gridspec(1, 3, width_ratios=[2.2, 1, 0.05])
    ax_map = fig.add_subplot(grid[0])
    ax_net = fig.add_subplot(grid[1])
    plotting.plot_stat_map(str(truth.maps["gm_loss_per_decade"]), bg_img=datasets.load_mni152_template(2),
                           display_mode="ortho", cut_coords=(30, 20, -10), axes=ax_map, cmap="magma",
                           colorbar=True, annotate=False, draw_cross=False, threshold=0.005)
    ax_map.set_title("GM fraction lost per decade (female rate)", fontsize=10, loc="left")
    nets = truth.networks
    change = {sex: (nets[f"within_fc_{sex}_80"] - nets[f"within_fc_{sex}_20"]) / 6 for sex in ("F", "M")}
    y = np.arange(len(nets))
    ax_net.barh(y - 0.2, change["F"], height=0.4, color=SEX_COLORS["F"], label="female")
    ax_net.barh(y + 0.2, change["M"], height=0.4, color=SEX_COLORS["M"], label="male")
    between = (nets["between_fc_F_80"] - nets["between_fc_F_20"]) / 6
    ax_net.scatter(between, y, marker="|", color="k", s=80, label="between (female)", zorder=3)
    ax_net.set_yticks(y, nets["network"], fontsize=8)
    ax_net.axvline(0, color="0.5", lw=0.8)
    ax_net.set_xlabel("expected FC change per decade (r)")
    ax_net.legend(fontsize=7, loc="lower left")
    return fig


def oracle_figure(root: Path, calibration: pd.DataFrame | None = None):
    """Per modality set (population, with 2 SE): the reachable floor and the unreachable oracle MAE,
    beside classical models if given.

    ``calibration``: the table of :func:`amage_core.synth.calibrate.calibration_table`.
    """
    import matplotlib.pyplot as plt

    from amage_core.synth.cohort import load_truth

    oracle = load_truth(root).oracle
    names = {"smri": "sMRI", "fmri": "fMRI", "both": "sMRI + fMRI"}
    fig, ax = plt.subplots(figsize=(7.5, 3.4), layout="constrained")
    x = np.arange(len(names))
    bars = [(oracle["floor"], "floor (reachable: noise-free parameters)", "#1b9e77"),
            (oracle["population"], "oracle (unreachable: latent ages)", "0.35")]
    width = 0.8 / (len(bars) + (calibration is not None))
    for i, (values, label, colour) in enumerate(bars):
        ax.bar(x + (i - 0.5 * (len(bars) - 1 + (calibration is not None))) * width,
               [values[k]["mae"] for k in names], width, yerr=[2 * values[k]["mae_se"] for k in names],
               color=colour, label=label)
    if calibration is not None:
        model_of = {"smri": "t1", "fmri": "fc", "both": "t1+fc"}
        maes = [float(calibration.set_index("model").loc[model_of[k], "mae"]) for k in names]
        ax.bar(x + (len(bars) - 0.5 * len(bars)) * width, maes, width, color="#7570b3",
               label="classical model (ridge, 5-fold CV)")
    ax.axhline(oracle["median_age_predictor_mae"], color="k", ls="--", lw=0.8, label="median-age guess")
    ax.set_xticks(x, list(names.values()))
    ax.set_ylabel("MAE (years)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
