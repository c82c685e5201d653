"""Training diagnostics: the lr range test and the sentences computed from curves and range tests."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from amage_core.config import TrainConfig
from amage_core.train import diagnostics
from amage_core.train.dataset import CohortDataset, input_spec
from amage_core.train.scaler import AgeScaler
from train_fixtures import TinyModel


def test_lr_range_test_sweeps_up_and_stops_when_the_loss_explodes(cohort, graph_cfg):
    part = cohort.participants
    rows = np.arange(32)
    scaler = AgeScaler.fit(part["age"].iloc[rows], part["participant_id"].iloc[rows])
    data = CohortDataset(cohort, rows, graph_cfg, scaler, frozenset({"table"}))
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, seed=0, device="cpu")
    table = diagnostics.lr_range_test(TinyModel(input_spec(cohort), modalities=("table",)), data, cfg,
                                      lr_min=1e-4, lr_max=100.0, steps=160)
    assert list(table.columns) == ["step", "lr", "loss", "smoothed"]
    assert np.all(np.diff(table["lr"]) > 0) and table["lr"].iloc[0] == pytest.approx(1e-4)
    # a linear model on an easy signal: the loss falls well below its level at lrs too small to
    # learn (the first 10 batches; one batch of 8 alone is too noisy), and lr 100 makes it diverge
    assert table["smoothed"].min() < 0.5 * table["loss"].iloc[:10].mean()
    assert len(table) < 160
    steep = diagnostics.steepest_lr(table)
    assert 1e-4 <= steep <= float(table.loc[table["smoothed"].idxmin(), "lr"])


def _curves(val):
    epochs = np.arange(1, len(val) + 1)
    return pd.DataFrame({"model": "m", "fold": "0", "epoch": epochs, "train_loss": 1.0 / epochs,
                         "val_loss": val, "lr": 1e-3, "seconds": 1.0})


def test_curve_sentence_reads_the_curves():
    assert "still falling" in diagnostics.curve_sentence(_curves(np.linspace(1.0, 0.2, 10)))
    assert "over-fits" in diagnostics.curve_sentence(_curves(np.r_[np.linspace(1, 0.2, 5), np.linspace(0.25, 0.5, 5)]))
    assert "flat after epoch 5" in diagnostics.curve_sentence(_curves(np.r_[np.linspace(1, 0.2, 5), [0.2] * 5]))
    assert "no validation split" in diagnostics.curve_sentence(_curves(np.full(10, np.nan)))


def test_lr_sentence_places_the_recipe_lr():
    lr = np.logspace(-5, 0, 50)
    loss = 1.0 / (1.0 + (lr / 1e-3) ** 2) + (lr / 0.1) ** 3     # falls around 1e-3, rises past ~0.05
    table = pd.DataFrame({"step": range(50), "lr": lr, "loss": loss, "smoothed": loss})
    steep = diagnostics.steepest_lr(table)
    assert 3e-4 < steep < 3e-3
    assert "too high" in diagnostics.lr_sentence({"m": table}, 0.5)
    assert "below the fastest descent" in diagnostics.lr_sentence({"m": table}, 1e-5)
