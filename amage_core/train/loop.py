"""Fit one model on one split with the training recipe; predict with it.

The recipe (:class:`~amage_core.config.TrainConfig`), the same for every deep variant:

- AdamW with decoupled weight decay on weights only (norms, biases, position and identity
  embeddings are not decayed: :func:`parameter_groups`); frozen parameters are left out;
- a fixed budget of ``epochs``; the learning rate rises linearly over ``warmup_fraction`` of all
  steps, then follows a cosine to ``lr * final_lr_fraction`` (:func:`lr_factor`, stepped per batch);
- training batches of full size only (``drop_last``: a last batch of a few participants would
  give BatchNorm noisy statistics);
- an exponential moving average of the weights (``ema_epochs``; ``torch.optim.swa_utils``): the
  model evaluated and kept is the EMA, not a weight snapshot picked on a small validation split;
- BatchNorm statistics recomputed on the training data (no augmentation) before every evaluation
  (``bn_recalibrate``; :func:`recalibrate_batchnorm`), so evaluation never reads running statistics
  that lag the weights;
- MSE on the scaled age (``amage_core.train.scaler``; standardised in the recipe);
- a fusion model on frozen pretrained encoders (``model.encoders_frozen``) encodes every training
  participant once per view, the plain inputs and (with ``augment``) ``encoded_views`` augmented
  draws, and trains its fusion stage on those encodings, one augmented view per epoch in turn
  (``BrainAgeModel.cached_encodings``): the T1 encoder runs ``1 + encoded_views`` times (the FC
  graphs, never augmented, once), not every epoch; ``encoded_views = epochs`` is exactly the
  encoders run on every batch.

``selection="last"`` (the recipe) keeps the final EMA weights; an optional ``val_set`` is evaluated
after every epoch only to draw the learning curve. ``selection="best"`` keeps the epoch with the
lowest loss on ``val_set``: the ``released-code`` protocol passes the test fold there, on purpose.
Bf16 autocast on CUDA (``TrainConfig.amp``), channels-last 3D memory on CUDA when the model reads T1.

Reproducibility and resumption:
- Batches are drawn by a ``DistributedSampler`` (also for one process) seeded with the run's seed
  and the epoch, so the data order depends on nothing but (seed, epoch); dropout uses the global
  torch RNG, seeded at the start of a fit and saved in every checkpoint.
- ``<out_dir>/checkpoint.pt`` is written atomically after every epoch: model, EMA, optimiser and
  scheduler state dicts, the kept weights (``best_model``: the final model once finished), history
  and RNG states, all tensors and plain numbers (``torch.load(..., weights_only=True)``; the file
  and the resumable state: :mod:`amage_core.train.checkpoint`).
  ``resume=True`` continues from it and reaches bitwise the same weights as an uninterrupted fit on CPU.
- ``TrainConfig.deterministic`` turns on ``torch.use_deterministic_algorithms`` (warn-only where
  an operation has no deterministic version, e.g. some scatter kernels on CUDA) for the fit.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from amage_core.config import TrainConfig, result_settings
from amage_core.io import remove_stale_temporaries, stable_hash
from amage_core.train import distributed
from amage_core.train.checkpoint import (CHECKPOINT, HISTORY, FitResult, TrainingState, resume_state,
                                         save_checkpoint, write_history)


@dataclass
class Prediction:
    rows: np.ndarray           # (N,) cohort rows (``idx``), in dataset order
    scaled: np.ndarray         # (N,) predicted scaled age
    target: np.ndarray         # (N,) the items' ``y`` (scaled age)
    gate: np.ndarray | None    # (N, G) gate values, or None when the model has no gate


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA (this process's GPU under torchrun) > Apple MPS > CPU; else the named device."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", distributed.context().local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def fit_fingerprint(cfg: TrainConfig, extra: Any = None) -> str:
    """Hash of what determines a fit; a checkpoint is resumed only under the same fingerprint (the
    settings that change no result, ``config.runtime_settings``, may differ: a resume may change them)."""
    return stable_hash({"train": result_settings(cfg), "extra": extra})


def fit(model: nn.Module, train_set, val_set, cfg: TrainConfig, out_dir: Path | None = None,
        resume: bool = False, progress: bool = True, fingerprint_extra: Any = None,
        desc: str = "fit", selection: Literal["last", "best"] = "last",
        stop_after: int | None = None, reuse: Path | None = None) -> FitResult:
    """Train ``model`` on ``train_set`` with the recipe (module docstring); the kept weights stay in it.

    ``train_set``/``val_set`` yield PyG ``Data`` with ``y`` (scaled age); ``model(batch).pred`` is
    (B,). ``val_set`` (may be ``None`` or empty with ``selection="last"``) is evaluated after every
    epoch. With ``out_dir`` the history and a checkpoint are written there after every epoch.
    ``fingerprint_extra`` (anything JSON-able: the data split, the model config) guards resumption.
    ``stop_after``: the schedule stays that of ``cfg.epochs``, but training stops after this epoch
    and its (evaluated) weights are kept, the weights a full fit has at that epoch; 0 keeps the
    starting weights (nothing is trained; the checkpoint is still written).
    ``reuse``: the checkpoint of a finished fit elsewhere; when it was written under the same
    fingerprint (the same settings, data split and starting point), it is this fit: its state is
    taken (and written to ``out_dir``) and nothing is trained. Otherwise the fit trains as usual.
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from torch_geometric.loader import DataLoader
    from tqdm.auto import tqdm

    if cfg.epochs < 1:
        raise ValueError(f"epochs must be at least 1 (got {cfg.epochs})")
    final = cfg.epochs if stop_after is None else stop_after
    if not 0 <= final <= cfg.epochs:
        raise ValueError(f"{desc}: stop_after must be in [0, epochs={cfg.epochs}] (got {stop_after})")
    if selection == "best" and final != cfg.epochs:
        raise ValueError(f"{desc}: stop_after and selection='best' exclude each other")
    has_val = val_set is not None and len(val_set) > 0
    if selection == "best" and not has_val:
        raise ValueError(f"{desc}: selection='best' needs a non-empty validation set")
    ctx = distributed.context()
    device = resolve_device(cfg.device)
    encodings = contextlib.nullcontext()      # entered with the epochs; yields the cache or None
    val_encodings = contextlib.nullcontext    # how the validation set is evaluated under it
    if getattr(model, "encoders_frozen", False):
        # the fusion stage on frozen encoders: every participant is encoded once per view (plain,
        # and cfg.encoded_views augmented draws) and the training batches carry labels only
        plain = getattr(train_set, "without_augmentation", lambda: train_set)()
        augmented = train_set if plain is not train_set else None
        # the validation participants are encoded once too when they belong to the same cohort
        # (rows name participants of one cohort); another cohort's are run through the encoders
        same_cohort = has_val and getattr(val_set, "cohort", None) is getattr(train_set, "cohort", False)
        if has_val and not same_cohort:
            val_encodings = model.encodings_suspended
        encodings = model.cached_encodings(plain, augmented, min(cfg.encoded_views, final),
                                           cfg.batch_size, device, val_set if same_cohort else None)
        train_set = getattr(train_set, "labels_only", lambda: train_set)()
    channels_last = device.type == "cuda" and "smri" in getattr(model, "modalities", ())
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    train_model = _PredictionOnly(model)
    if ctx.enabled:
        train_model = _wrap_ddp(train_model, device)
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=cfg.seed)
    local_batch = distributed.local_batch_size(cfg.batch_size, ctx)
    loader = DataLoader(train_set, batch_size=local_batch, sampler=sampler, num_workers=cfg.num_workers,
                        drop_last=len(sampler) >= local_batch)
    steps_per_epoch = len(loader)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg.warmup_fraction, cfg.final_lr_fraction))
    ema = None
    if cfg.ema_epochs > 0:
        decay = 1.0 - 1.0 / max(1.0, cfg.ema_epochs * steps_per_epoch)
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    bn_loader = None
    if cfg.bn_recalibrate and _trainable_batchnorms(model):
        plain = getattr(train_set, "without_augmentation", lambda: train_set)()
        bn_loader = DataLoader(plain, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    fingerprint = fit_fingerprint(cfg, {"extra": fingerprint_extra, "selection": selection,
                                        **({"stop_after": final} if final != cfg.epochs else {})})
    ckpt_path = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    state = TrainingState()
    torch.manual_seed(cfg.seed)
    if ckpt_path is not None and ctx.is_main:      # left by a fit killed while writing them
        remove_stale_temporaries(ckpt_path.parent, (CHECKPOINT, HISTORY))

    def persist() -> None:
        """History and checkpoint of the fit so far, written atomically (main process only)."""
        if ckpt_path is not None and ctx.is_main:
            write_history(ckpt_path.parent / HISTORY, state.history_frame())
            save_checkpoint(ckpt_path, state.to_checkpoint(fingerprint, model, ema, optimizer, scheduler))

    if resume and ckpt_path is not None and ckpt_path.is_file():
        state = resume_state(ckpt_path, fingerprint, model, ema, optimizer, scheduler, device)
        if state.finished:
            model.load_state_dict(state.best_model)
            return state.result()
    elif reuse is not None and _finished_with(Path(reuse), fingerprint):
        state = resume_state(Path(reuse), fingerprint, model, ema, optimizer, scheduler, device)
        model.load_state_dict(state.best_model)
        persist()
        return state.result()

    if final == 0:          # the starting weights, kept as a finished fit
        state.finished, state.best_val_loss, state.best_model = True, float("nan"), _snapshot(model)
        persist()
        return state.result()
    writer = _tensorboard(out_dir) if out_dir is not None and ctx.is_main else None
    bar = tqdm(range(state.epoch + 1, final + 1), desc=desc, unit="epoch", leave=False,
               disable=not (progress and ctx.is_main))
    with _deterministic(cfg.deterministic), encodings as cache:
        for epoch in bar:
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            sampler.set_epoch(epoch)
            for epoch_aware in (train_set, cache):
                if hasattr(epoch_aware, "set_epoch"):
                    epoch_aware.set_epoch(epoch)
            train_loss = _train_epoch(train_model, loader, optimizer, scheduler, ema, model, device,
                                      cfg, channels_last)
            last = epoch == final
            val_loss = float("nan")
            if has_val or last:
                evaluated = _evaluated_weights(model, ema, bn_loader, device)
                if has_val:
                    with val_encodings():
                        val_loss = _loss_with(model, evaluated, val_set, cfg, device)
            if selection == "best":
                state.consider(epoch, val_loss, evaluated)
            if last:
                state.finished = True
                if selection == "last":
                    state.best_epoch, state.best_val_loss, state.best_model = epoch, val_loss, evaluated
                if state.best_model is None:
                    raise RuntimeError(f"{desc}: the validation loss was never finite (diverged?)")
                model.load_state_dict(state.best_model)
            state.record(epoch, train_loss, val_loss, lr, time.perf_counter() - start)
            if not np.isfinite(train_loss):
                raise RuntimeError(f"{desc}: the training loss is {train_loss} at epoch {epoch} "
                                   f"(lr {lr:.2e}): the fit diverged")
            persist()
            if writer is not None:
                for key, value in (("loss/train", train_loss), ("loss/val", val_loss), ("lr", lr)):
                    writer.add_scalar(key, value, epoch)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
    bar.close()
    if writer is not None:
        writer.close()
    distributed.barrier()
    return state.result()


def _finished_with(path: Path, fingerprint: str) -> bool:
    """Whether ``path`` is the checkpoint of a finished fit written under ``fingerprint``."""
    if not path.is_file():
        return False
    from amage_core.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

    ckpt = load_checkpoint(path, torch.device("cpu"))
    return (ckpt.get("format") == CHECKPOINT_FORMAT and bool(ckpt.get("finished"))
            and ckpt.get("fingerprint") == fingerprint)


def lr_factor(step: int, total: int, warmup_fraction: float, final_fraction: float) -> float:
    """Learning-rate multiplier at optimiser ``step`` (0-based) of ``total``: linear warmup over
    ``warmup_fraction`` of the steps (from 1/warmup), then a cosine from 1 to ``final_fraction``."""
    warmup = int(round(warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


_NO_DECAY_NAMES = ("position", "embedding", "bias")


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: trainable weights with decay, and without decay every 1-d parameter (norms,
    biases) and the learned position/identity embeddings. Encoder parameters of a fusion model
    being fine-tuned (``model.finetuned_encoders``) get ``lr * encoder_lr_scale``."""
    finetuned = tuple(f"{name}." for name in getattr(model, "finetuned_encoders", ()))
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim >= 2 and not any(key in name for key in _NO_DECAY_NAMES)
        groups.setdefault((decay, name.startswith(finetuned) if finetuned else False), []).append(param)
    return [{"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
             "lr": cfg.lr * (cfg.encoder_lr_scale if encoder else 1.0)}
            for (decay, encoder), params in sorted(groups.items())]


def _trainable_batchnorms(model: nn.Module) -> list[nn.Module]:
    """BatchNorm layers whose parameters are trained (a frozen encoder keeps its statistics)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and any(p.requires_grad for p in m.parameters())]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader, device: torch.device) -> None:
    """Recompute the running statistics of the trainable BatchNorm layers of ``model`` over one pass
    of ``loader`` (as ``torch.optim.swa_utils.update_bn``, for PyG batches, weighting each batch by
    its size, and leaving frozen layers alone): the running mean becomes the mean over the data,
    the running variance the size-weighted mean of the batches' variances. Dropout is off."""
    layers = _trainable_batchnorms(model)
    if not layers:
        return
    momenta = {layer: layer.momentum for layer in layers}
    for layer in layers:
        layer.reset_running_stats()
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.train()
    seen = 0
    for batch in loader:
        size = batch.num_graphs
        for layer in layers:
            layer.momentum = size / (seen + size)    # running = size-weighted mean of batch stats
        model(batch.to(device))
        seen += size
    for layer, momentum in momenta.items():
        layer.momentum = momentum
    model.train(was_training)


def _snapshot(model: nn.Module) -> dict:
    """A copy of the model's state dict (weights and buffers) that later steps do not change."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _evaluated_weights(model: nn.Module, ema, bn_loader, device: torch.device) -> dict:
    """The weights the recipe evaluates: the EMA (or the live weights), BatchNorm recalibrated.
    The live model's own weights are left as they are (training goes on from them)."""
    live = _snapshot(model)
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    if bn_loader is not None:
        recalibrate_batchnorm(model, bn_loader, device)
    evaluated = _snapshot(model)
    model.load_state_dict(live)
    return evaluated


def _loss_with(model: nn.Module, weights: dict, dataset, cfg: TrainConfig, device: torch.device) -> float:
    live = _snapshot(model)
    model.load_state_dict(weights)
    try:
        return evaluate_loss(model, dataset, cfg, device)
    finally:
        model.load_state_dict(live)


def evaluate_loss(model: nn.Module, dataset, cfg: TrainConfig, device: torch.device) -> float:
    """Mean squared error (scaled age) of ``model`` on all of ``dataset``, in eval mode."""
    pred = predict(model, dataset, cfg, device)
    return float(np.mean((pred.scaled.astype(np.float64) - pred.target.astype(np.float64)) ** 2))


@torch.no_grad()
def predict(model: nn.Module, dataset, cfg: TrainConfig, device: torch.device | None = None) -> Prediction:
    """Predicted scaled age (and gate values) for every item of ``dataset``, in order, eval mode."""
    from torch_geometric.loader import DataLoader

    device = device or resolve_device(cfg.device)
    model.to(device)
    was_training = model.training
    model.eval()
    rows, preds, targets, gates = [], [], [], []
    channels_last = device.type == "cuda" and "smri" in getattr(model, "modalities", ())
    for batch in DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers):
        batch = _to_device(batch, device, channels_last)
        with _autocast(device, cfg.amp):
            out = model(batch)
        rows.append(batch.idx.cpu().numpy())
        preds.append(out.pred.float().cpu().numpy())
        targets.append(batch.y.float().cpu().numpy())
        if out.gate is not None:
            gates.append(out.gate.float().cpu().numpy())
    model.train(was_training)
    return Prediction(np.concatenate(rows), np.concatenate(preds), np.concatenate(targets),
                      np.concatenate(gates) if gates else None)


# ----------------------------------------------------------------------------------------------
def _train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, ema,
                 raw: nn.Module, device: torch.device, cfg: TrainConfig, channels_last: bool) -> float:
    """One pass over ``loader`` (lr and EMA stepped per batch); returns the sample-weighted mean
    training loss (all processes)."""
    model.train()
    total, count = 0.0, 0
    for batch in loader:
        batch = _to_device(batch, device, channels_last)
        with _autocast(device, cfg.amp):
            pred = model(batch)
        loss = F.mse_loss(pred.float(), batch.y.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(raw)
        total += loss.item() * batch.num_graphs
        count += batch.num_graphs
    total, count = distributed.all_reduce_sum([total, count], device)
    return total / count


def _to_device(batch, device: torch.device, channels_last: bool):
    batch = batch.to(device, non_blocking=True)
    if channels_last and "t1" in batch:
        batch.t1 = batch.t1.contiguous(memory_format=torch.channels_last_3d)
    return batch


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast on GPUs that compute in bf16 natively (compute capability 8.0+, Ampere and
    later); fp32 elsewhere (a T4 would only emulate bf16, slower than fp32)."""
    if amp and device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the duration of a fit; the previous setting is restored after."""
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


class _PredictionOnly(nn.Module):
    """``batch -> model(batch).pred`` (B,): what the loss reads. Under DDP, parameters that feed
    only the other outputs (a gate read for interpretation, say) are then found unused and skipped."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch) -> torch.Tensor:
        return self.model(batch).pred


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:            # TensorBoard is optional; history.csv is always written
        return None
    return SummaryWriter(str(Path(out_dir) / "tensorboard"))
