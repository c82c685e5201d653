"""The training loop: the recipe (schedule, weight decay groups, full batches, EMA, BatchNorm
recalibration), bitwise resume, best-epoch selection (released-code protocol), safe checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from torch import nn

from amage_core.config import TrainConfig, replace
from amage_core.train import loop
from amage_core.train.checkpoint import CHECKPOINT, load_checkpoint
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


def _fit(cohort, graph_cfg, cfg, out, resume=False, selection="last", model=None):
    train, val = _sets(cohort, graph_cfg)
    torch.manual_seed(0)
    model = model or TinyModel(input_spec(cohort), dropout=0.3)
    result = loop.fit(model, train, val, cfg, out, resume=resume, progress=False, selection=selection)
    return model, result


class BatchNormModel(TinyModel):
    """TinyModel with a BatchNorm on its table features; records the training batch sizes."""

    def __init__(self, spec):
        super().__init__(spec, modalities=("table",), dropout=0.0)
        self.norm = nn.BatchNorm1d(spec.n_table_features)
        self.sizes = []

    def forward(self, batch):
        if self.training:
            self.sizes.append(batch.num_graphs)
        batch.tab = self.norm(batch.tab)
        return super().forward(batch)


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


def test_best_selection_keeps_the_best_epoch(cohort, graph_cfg, fast_cfg, tmp_path):
    """selection="best" (the released-code protocol) keeps the weights of the lowest validation loss."""
    cfg = replace(fast_cfg, epochs=12, lr=0.3)
    model, result = _fit(cohort, graph_cfg, cfg, tmp_path, selection="best")
    history = result.history
    assert result.epochs_run == 12
    assert result.best_epoch == int(history["val_loss"].idxmin()) + 1
    _, val = _sets(cohort, graph_cfg)
    assert loop.evaluate_loss(model, val, cfg, torch.device("cpu")) == pytest.approx(result.best_val_loss)
    assert (tmp_path / "history.csv").read_text().startswith("epoch,train_loss,val_loss,lr,seconds")


def test_stop_after_keeps_the_weights_the_full_schedule_has_at_that_epoch(cohort, graph_cfg, fast_cfg,
                                                                          tmp_path):
    """stop_after=k walks the first k epochs of the full schedule (same losses, same lr) and keeps the
    weights evaluated at epoch k; stop_after=0 keeps the starting weights as a finished fit."""
    cfg = replace(fast_cfg, epochs=6, lr=0.1)
    _, full = _fit(cohort, graph_cfg, cfg, tmp_path / "full")
    train, val = _sets(cohort, graph_cfg)
    torch.manual_seed(0)
    model = TinyModel(input_spec(cohort), dropout=0.3)
    part = loop.fit(model, train, val, cfg, tmp_path / "part", progress=False, stop_after=3)
    assert part.epochs_run == 3 and part.best_epoch == 3
    columns = ["train_loss", "val_loss", "lr"]
    np.testing.assert_array_equal(part.history[columns].to_numpy(), full.history[columns].to_numpy()[:3])
    assert loop.evaluate_loss(model, val, cfg, torch.device("cpu")) == pytest.approx(part.best_val_loss)

    torch.manual_seed(0)
    model = TinyModel(input_spec(cohort), dropout=0.3)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    none = loop.fit(model, train, val, cfg, tmp_path / "none", progress=False, stop_after=0)
    assert none.epochs_run == 0 and none.best_epoch == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in start.items())
    kept = load_checkpoint(tmp_path / "none" / CHECKPOINT)
    assert kept["finished"] and all(torch.equal(v, kept["best_model"][k]) for k, v in start.items())
    for bad in (-1, 7):
        with pytest.raises(ValueError, match="stop_after must be in"):
            loop.fit(model, train, val, cfg, progress=False, stop_after=bad)


def test_last_selection_keeps_the_final_weights_without_a_validation_set(cohort, graph_cfg, fast_cfg):
    train, _ = _sets(cohort, graph_cfg)
    torch.manual_seed(0)
    result = loop.fit(TinyModel(input_spec(cohort)), train, None, replace(fast_cfg, epochs=3), progress=False)
    assert result.best_epoch == 3 and np.isnan(result.best_val_loss)
    assert result.history["val_loss"].isna().all()
    with pytest.raises(ValueError, match="selection='best' needs"):
        loop.fit(TinyModel(input_spec(cohort)), train, None, fast_cfg, progress=False, selection="best")


def test_lr_warms_up_then_follows_a_cosine_to_its_floor():
    total = 100
    factors = [loop.lr_factor(s, total, 0.1, 0.01) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:10], factors[1:10]))           # warmup rises
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))           # then never rises
    assert factors[-1] == pytest.approx(0.01, abs=1e-3)
    assert loop.lr_factor(55, total, 0.1, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)   # half way


def test_weight_decay_spares_norms_biases_embeddings_and_frozen_parameters():
    model = nn.Module()
    model.lin = nn.Linear(4, 4)
    model.norm = nn.LayerNorm(4)
    model.network_embedding = nn.Parameter(torch.zeros(3, 4))
    model.frozen = nn.Linear(4, 4).requires_grad_(False)
    groups = loop.parameter_groups(model, TrainConfig(weight_decay=0.05))
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    undecayed = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == {id(model.lin.weight)}
    assert undecayed == {id(model.lin.bias), id(model.norm.weight), id(model.norm.bias),
                         id(model.network_embedding)}


def test_training_batches_are_full_and_batchnorm_is_recalibrated(cohort, graph_cfg, fast_cfg):
    """28 training participants in batches of 8: three full batches an epoch (drop_last); after the
    fit, BatchNorm's running statistics are those of the training data under the kept weights."""
    train, val = _sets(cohort, graph_cfg)
    torch.manual_seed(0)
    model = BatchNormModel(input_spec(cohort))
    loop.fit(model, train, val, replace(fast_cfg, epochs=3, ema_epochs=1.0), progress=False)
    assert set(model.sizes) == {8} and len(model.sizes) == 3 * 3
    tables = torch.tensor(np.asarray(cohort.tables)[np.arange(28)], dtype=torch.float32)
    assert torch.allclose(model.norm.running_mean, tables.mean(0), atol=1e-5)
    # the mean of the batches' variances (batches of 8): near the variance of the whole set
    assert torch.allclose(model.norm.running_var, tables.var(0), rtol=0.25)


def test_recalibration_can_be_turned_off(cohort, graph_cfg, fast_cfg):
    train, val = _sets(cohort, graph_cfg)
    torch.manual_seed(0)
    model = BatchNormModel(input_spec(cohort))
    loop.fit(model, train, val, replace(fast_cfg, epochs=3, ema_epochs=0.0, bn_recalibrate=False), progress=False)
    tables = torch.tensor(np.asarray(cohort.tables)[np.arange(28)], dtype=torch.float32)
    assert not torch.allclose(model.norm.running_mean, tables.mean(0), atol=1e-3)


def test_checkpoint_is_weights_only_and_guards_its_configuration(cohort, graph_cfg, fast_cfg, tmp_path):
    _fit(cohort, graph_cfg, replace(fast_cfg, epochs=1), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "ema", "optimizer", "scheduler", "best_model", "rng", "epoch"} <= set(ckpt)
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    with pytest.raises(ValueError, match="different configuration"):
        _fit(cohort, graph_cfg, replace(fast_cfg, epochs=1, lr=0.5), tmp_path, resume=True)


def test_bf16_autocast_only_on_gpus_that_compute_it_natively(monkeypatch):
    import contextlib

    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))     # T4
    assert isinstance(loop._autocast(cuda, True), contextlib.nullcontext)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))     # H100/H200
    assert isinstance(loop._autocast(cuda, True), torch.autocast)
    assert isinstance(loop._autocast(cuda, False), contextlib.nullcontext)
    assert isinstance(loop._autocast(torch.device("cpu"), True), contextlib.nullcontext)


def _frozen_fusion(cohort, repo):
    """(training rows 0-23, their age scaler, a function making a tiny AMAge-Net whose random fMRI
    and DenseNet branches, drawn once from seed 0, are loaded frozen)."""
    from amage_core.config import load_profile
    from amage_core.models import build_model

    profile = load_profile(repo / "tests" / "profiles" / "tiny.yml")
    spec = input_spec(cohort)
    part = cohort.participants
    rows = np.arange(24)
    scaler = AgeScaler.fit(part["age"].iloc[rows], part["participant_id"].iloc[rows])
    torch.manual_seed(0)
    branches = {"fmri": build_model(replace(profile.model, variant="fmri"), spec).state_dict(),
                "structural": build_model(replace(profile.model, variant="smri"), spec).state_dict()}

    def fused():
        model = build_model(replace(profile.model, variant="amagenet"), spec)
        model.load_branches(branches, "frozen")
        return model

    return rows, scaler, fused


@pytest.mark.parametrize("augment", [False, True])
def test_frozen_encoders_are_run_once_per_view_and_give_the_same_fit(cohort, graph_cfg, repo, monkeypatch,
                                                                      augment):
    """A fusion model on frozen encoders encodes each training participant once per view (not every
    step): without augmentation one plain view; with it, views of the augmented draws of epochs
    1..encoded_views (T1 only: the FC graphs are never augmented, so the fMRI encoder runs once),
    so with encoded_views = epochs it reaches exactly the weights it reaches when the encoders run on
    every batch."""
    from amage_core.models.amagenet import BrainAgeModel

    rows, scaler, fused = _frozen_fusion(cohort, repo)
    data = CohortDataset(cohort, rows, graph_cfg, scaler, frozenset({"fmri", "smri"}), augment=augment, seed=3)
    val_rows = np.arange(24, 32)
    val = CohortDataset(cohort, val_rows, graph_cfg, scaler, frozenset({"fmri", "smri"}))
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, seed=0, device="cpu", ema_epochs=1, augment=augment,
                      encoded_views=3)
    fitted, calls, curves = [], [], []
    for cached in (True, False):
        if not cached:
            monkeypatch.setattr(BrainAgeModel, "encoders_frozen", property(lambda self: False))
        torch.manual_seed(1)
        model = fused()
        seen = {"fmri": [], "smri": []}
        for name in seen:
            getattr(model, f"{name}_encoder").register_forward_hook(
                lambda m, i, o, name=name: seen[name].append(o.embedding.shape[0]))
        result = loop.fit(model, data, val, cfg, progress=False)
        fitted.append(model.state_dict())
        calls.append({name: sum(n) for name, n in seen.items()})
        curves.append(result.history["val_loss"].to_numpy())
    views = 1 + (cfg.encoded_views if augment else 0)
    # every training participant once per view (the fMRI encoder: once), every validation participant once
    assert calls[0] == {"fmri": len(rows) + len(val_rows), "smri": views * len(rows) + len(val_rows)}
    for name in ("fmri", "smri"):        # everyone at every epoch
        assert calls[1][name] >= cfg.epochs * (len(rows) + len(val_rows))
    for key, value in fitted[1].items():
        torch.testing.assert_close(fitted[0][key], value, rtol=1e-4, atol=1e-5, msg=key)
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-4)


def test_a_validation_set_of_another_cohort_is_never_read_from_the_encoding_cache(cohort, graph_cfg, repo,
                                                                                   tmp_path):
    """Cached encodings are looked up by cohort row: another cohort's row 3 is another person, so a
    validation set from another cohort runs through the encoders (its loss is the model's own)."""
    from train_fixtures import make_cohort

    rows, scaler, fused = _frozen_fusion(cohort, repo)
    mods = frozenset({"fmri", "smri"})
    data = CohortDataset(cohort, rows, graph_cfg, scaler, mods)
    other = make_cohort(tmp_path / "other", seed=5, age_range=(60.0, 90.0))
    val = CohortDataset(other, np.arange(8), graph_cfg, scaler, mods)    # rows 0-7: trained-on rows here
    model = fused()
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, seed=0, device="cpu", ema_epochs=0)
    result = loop.fit(model, data, val, cfg, progress=False)
    assert model.encoders_frozen
    own = loop.evaluate_loss(model, val, cfg, torch.device("cpu"))     # after fit: no cache
    assert result.history["val_loss"].iloc[-1] == pytest.approx(own, rel=1e-5)
