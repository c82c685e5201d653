"""The training loop: bitwise resume, early stopping with best weights, safe checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from amage_core.config import replace
from amage_core.train import loop
from amage_core.train.dataset import CohortDataset, input_spec
from amage_core.train.scaler import AgeScaler
from train_fixtures import TinyModel


def _sets(cohort, graph_cfg):
    part = cohort.participants
    fit_rows, val_rows = np.arange(0, 28), np.arange(28, 36)
    scaler = AgeScaler.fit(part["age"].iloc[fit_rows], part["participant_id"].iloc[fit_rows])
    mods = frozenset({"fmri", "smri", "table"})
    return (CohortDataset(cohort, fit_rows, graph_cfg, scaler, mods),
            CohortDataset(cohort, val_rows, graph_cfg, scaler, mods))


def _fit(cohort, graph_cfg, cfg, out, resume=False):
    train, val = _sets(cohort, graph_cfg)
    torch.manual_seed(0)
    model = TinyModel(input_spec(cohort), dropout=0.3)
    result = loop.fit(model, train, val, cfg, out, resume=resume, progress=False)
    return model, result


def test_resume_reaches_bitwise_the_uninterrupted_result(cohort, graph_cfg, fast_cfg, tmp_path, monkeypatch):
    cfg = replace(fast_cfg, epochs=5)
    full_model, full = _fit(cohort, graph_cfg, cfg, tmp_path / "full")

    saved = []
    real_save = loop.save_checkpoint

    def save_then_crash(path, checkpoint):
        real_save(path, checkpoint)
        saved.append(checkpoint["epoch"])
        if len(saved) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _fit(cohort, graph_cfg, cfg, tmp_path / "cut")
    monkeypatch.undo()
    assert saved == [1, 2]

    resumed_model, resumed = _fit(cohort, graph_cfg, cfg, tmp_path / "cut", resume=True)
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    cols = ["epoch", "train_loss", "val_loss", "lr"]
    assert full.history[cols].equals(resumed.history[cols])
    assert (full.best_epoch, full.best_val_loss) == (resumed.best_epoch, resumed.best_val_loss)

    # a finished fit resumes to the same best weights without training again
    again_model, again = _fit(cohort, graph_cfg, cfg, tmp_path / "cut", resume=True)
    assert all(torch.equal(v, again_model.state_dict()[k]) for k, v in full_model.state_dict().items())


def test_early_stopping_keeps_the_best_weights(cohort, graph_cfg, fast_cfg, tmp_path):
    cfg = replace(fast_cfg, epochs=30, lr=0.3, early_stopping_patience=2, scheduler_patience=50)
    model, result = _fit(cohort, graph_cfg, cfg, tmp_path)
    history = result.history
    assert result.stopped_early and result.epochs_run < 30
    assert result.best_epoch == int(history["val_loss"].idxmin()) + 1
    assert result.epochs_run - result.best_epoch == 2
    _, val = _sets(cohort, graph_cfg)
    assert loop.evaluate_loss(model, val, cfg, torch.device("cpu")) == pytest.approx(result.best_val_loss)
    assert (tmp_path / "history.csv").read_text().startswith("epoch,train_loss,val_loss,lr,seconds")


def test_checkpoint_is_weights_only_and_guards_its_configuration(cohort, graph_cfg, fast_cfg, tmp_path):
    _fit(cohort, graph_cfg, replace(fast_cfg, epochs=1), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "best_model", "rng", "epoch"} <= set(ckpt)
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    with pytest.raises(ValueError, match="different configuration"):
        _fit(cohort, graph_cfg, replace(fast_cfg, epochs=1, lr=0.5), tmp_path, resume=True)
