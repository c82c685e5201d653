"""Training diagnostics: what a reader needs to trust that a deep model is well trained.

- :func:`lr_range_test` (Smith 2017): a fresh model trained for a few hundred steps while the
  learning rate grows exponentially; the loss against lr shows where training is fast and where
  it diverges, and whether the recipe's lr sits in the good range.
- :func:`curves`: the learning curves (training loss, and validation loss of the evaluated
  weights, i.e. EMA + recalibrated BatchNorm) of runs that kept an inner validation split.
- :func:`size_table`: MAE against training-set size, from runs that train on a fraction of each
  training fold (``TrainConfig.train_fraction``) and are tested on the same whole test folds.

The first two read only training data (a fold's training participants); the size table reports
the runs' cross-validated test predictions, as every accuracy figure of the book does.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from amage_core.config import TrainConfig


def lr_range_test(model: torch.nn.Module, train_set, cfg: TrainConfig, lr_min: float = 1e-5,
                  lr_max: float = 1.0, steps: int = 200, smoothing: float = 0.95,
                  stop_factor: float = 4.0) -> pd.DataFrame:
    """Loss against learning rate for ``model`` trained on ``train_set`` (recipe optimiser: AdamW
    with the recipe's weight-decay groups), the lr growing from ``lr_min`` to ``lr_max`` over
    ``steps`` batches (the data is cycled). Stops once the smoothed loss exceeds ``stop_factor``
    times its minimum (divergence).

    Returns one row per step: ``step``, ``lr``, ``loss`` (the batch's MSE), ``smoothed`` (bias-
    corrected exponential moving average, as in fastai's finder).
    """
    from torch_geometric.loader import DataLoader

    from amage_core.train.loop import parameter_groups

    if not 0 < lr_min < lr_max:
        raise ValueError(f"need 0 < lr_min < lr_max (got {lr_min}, {lr_max})")
    torch.manual_seed(cfg.seed)
    model.train()
    groups = parameter_groups(model, cfg)
    for group in groups:
        group["lr"] = lr_min
    optimizer = torch.optim.AdamW(groups, lr=lr_min, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        generator=generator)
    ratio = (lr_max / lr_min) ** (1.0 / max(1, steps - 1))
    rows, average, best = [], 0.0, math.inf
    step = 0
    while step < steps:
        for batch in loader:
            if step >= steps:
                break
            lr = lr_min * ratio ** step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.mse_loss(model(batch).pred.float(), batch.y.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.item())
            average = smoothing * average + (1 - smoothing) * value
            smoothed = average / (1 - smoothing ** (step + 1))
            rows.append({"step": step, "lr": lr, "loss": value, "smoothed": smoothed})
            step += 1
            if not np.isfinite(smoothed) or smoothed > stop_factor * best:
                return pd.DataFrame(rows)
            best = min(best, smoothed)
    return pd.DataFrame(rows)


def steepest_lr(table: pd.DataFrame, skip: float = 0.1) -> float:
    """The lr where the smoothed loss falls fastest (per log-lr), between the first ``skip`` of the
    steps (where the moving average has not settled) and the loss minimum."""
    start = int(skip * len(table))
    upto = table.iloc[start: max(start, int(table["smoothed"].idxmin())) + 1]
    if len(upto) < 3:
        return float(table["lr"].iloc[0])
    slope = np.gradient(upto["smoothed"].to_numpy(), np.log(upto["lr"].to_numpy()))
    return float(upto["lr"].iloc[int(np.argmin(slope))])


def curves(runs: dict) -> pd.DataFrame:
    """Learning curves of runs (label -> run with ``fold-<k>/history.csv``; a fusion run gives its
    stage's curve on the blend split, ``train.rundir.fold_histories``): one row per (model, fold,
    epoch) with ``train_loss``, ``val_loss`` (NaN where the run kept no validation split) and ``lr``."""
    from amage_core.train.rundir import fold_histories

    frames = []
    for label, run in runs.items():
        for fold, h in fold_histories(run.path).items():
            h.insert(0, "fold", fold)
            h.insert(0, "model", label)
            frames.append(h)
    if not frames:
        raise ValueError("no learning curves: the runs have no history.csv (baselines?)")
    return pd.concat(frames, ignore_index=True)


def curve_sentence(curves: pd.DataFrame, rise: float = 0.10, tail: float = 0.2) -> str:
    """What the validation curves say, per model, computed from them: at the last epoch the mean
    validation loss over folds is compared with its minimum; "still falling" when the minimum is in
    the last ``tail`` of the epochs, "over-fits" when the last value exceeds the minimum by more
    than ``rise`` (relative), "flat" otherwise."""
    parts = []
    for model, part in curves.groupby("model", sort=False):
        mean = part.groupby("epoch")["val_loss"].mean().dropna()
        if mean.empty:
            parts.append(f"{model}: no validation split")
            continue
        best_epoch, best, last = int(mean.idxmin()), float(mean.min()), float(mean.iloc[-1])
        n = int(mean.index.max())
        if best_epoch > (1 - tail) * n:
            state = "still falling at the end (a longer budget may help)"
        elif last > (1 + rise) * best:
            state = f"lowest at epoch {best_epoch} and {last / best - 1:.0%} higher at the end (over-fits)"
        else:
            state = f"flat after epoch {best_epoch} (within {rise:.0%} of its minimum at the end)"
        parts.append(f"{model}: validation loss (fold mean) {state}; final {last:.3f}, minimum {best:.3f}")
    return "Learning curves. " + "; ".join(parts) + "."


def lr_sentence(ranges: dict[str, pd.DataFrame], recipe_lr: float) -> str:
    """Where the recipe's lr sits in each range test, computed from the tables."""
    parts = []
    for model, table in ranges.items():
        steep = steepest_lr(table)
        lowest = float(table.loc[table["smoothed"].idxmin(), "lr"])
        where = ("below the fastest descent" if recipe_lr < steep else
                 "between the fastest descent and the minimum" if recipe_lr <= lowest else
                 "past the loss minimum (too high)")
        parts.append(f"{model}: fastest descent at lr {steep:.1e}, minimum loss at {lowest:.1e}; "
                     f"the recipe's {recipe_lr:g} is {where}")
    return "Learning-rate range test. " + "; ".join(parts) + "."


def size_table(runs: dict) -> pd.DataFrame:
    """MAE against training-set size: ``runs`` maps (model, train_fraction) to a run (deep or
    baseline) on the same outer folds. One row per run: ``model``, ``fraction``, ``n_train`` (the
    participants a fold trains on, fit plus inner validation, mean over folds), ``mae``
    (uncorrected, pooled over the test folds) and ``n_test``."""
    from amage_core.train.rundir import fold_fit, run_fold_names

    rows = []
    for (model, fraction), run in runs.items():
        fits = [fold_fit(run, fold) for fold in run_fold_names(run)]
        if not fits:
            raise ValueError(f"{run.path}: no fold-*/fit.json (an unfinished run?)")
        pred = run.predictions
        rows.append({"model": model, "fraction": float(fraction),
                     "n_train": float(np.mean([f["n_fit"] + f.get("n_val", 0) for f in fits])),
                     "mae": float(np.mean(np.abs(pred["predicted_age"] - pred["age"]))),
                     "n_test": int(len(pred))})
    return pd.DataFrame(rows).sort_values(["model", "fraction"], ignore_index=True)


def size_sentence(table: pd.DataFrame) -> str:
    """What the size curves say, per model, computed from them: the MAE at the smallest and the
    largest training set, and the drop over the last doubling-or-so step (a curve still falling
    steeply at full size says more participants would help)."""
    parts = []
    for model, part in table.groupby("model", sort=False):
        part = part.sort_values("n_train")
        first, last = part.iloc[0], part.iloc[-1]
        text = (f"{model}: MAE {first['mae']:.2f} with {first['n_train']:.0f} training participants, "
                f"{last['mae']:.2f} with {last['n_train']:.0f}")
        if len(part) > 2:
            before = part.iloc[-2]
            text += f" ({last['mae'] - before['mae']:+.2f} over the last step from {before['n_train']:.0f})"
        parts.append(text)
    return "MAE against training-set size. " + "; ".join(parts) + "."
