"""The checkpoint file of a fit and the state a resumed fit continues from.

:func:`~amage_core.train.loop.fit` with an output folder writes, after every epoch,

- ``checkpoint.pt`` (:data:`CHECKPOINT`): a dict of tensors and plain Python values only: the
  format version (:data:`CHECKPOINT_FORMAT`) and the fit's fingerprint (``loop.fit_fingerprint``:
  the recipe settings but the runtime ones, and what the caller passes, such as the data split and
  the model config); the epoch; the kept weights so far (``best_model``: the final model once
  ``finished``) with their epoch and validation loss; the history; the state dicts of the model,
  the EMA, the optimiser and the scheduler; the torch (and CUDA) RNG states;
- ``history.csv`` (:data:`HISTORY`): one row per epoch (epoch, train_loss, val_loss, lr, seconds).

Both are written atomically (:func:`amage_core.io.atomic_write`: a temporary file beside it,
synced, then renamed over it), so an interruption, even mid-write, leaves the previous epoch's
files intact. :func:`load_checkpoint` checks the zip's CRC-32 of every record, then loads with
``torch.load(..., weights_only=True)``: a damaged file, or one that would need pickle to load
(and could run code), is refused with a ``ValueError`` naming it. :func:`resume_state` restores a
fit from a checkpoint of the same format and fingerprint and returns its :class:`TrainingState`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from amage_core.io import atomic_write

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"
CHECKPOINT_FORMAT = 2
_HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    """Write a checkpoint atomically (an interruption leaves the previous one intact)."""
    with atomic_write(path, "wb") as fh:
        torch.save(checkpoint, fh)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by :func:`~amage_core.train.loop.fit` (tensors and plain Python
    values only).

    The zip's CRC-32 of every record is checked first (``torch.load`` does not check them, so a
    changed byte would load as a silently different weight); a damaged file, or one holding
    anything but tensors and plain values, is a ``ValueError`` naming it.
    """
    import pickle
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: damaged checkpoint, not a readable torch zip file ({exc}); "
                         "delete it to restart this fold") from exc
    if bad is not None:
        raise ValueError(f"{path}: damaged checkpoint (checksum mismatch in {bad}); delete it to "
                         "restart this fold")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: refused, not a weights-only checkpoint (it holds objects that "
                         f"would need pickle: {str(exc).splitlines()[0]})") from exc


def write_history(path: Path, history: pd.DataFrame) -> None:
    """Write ``history.csv`` atomically, one row per epoch."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        history.to_csv(fh, index=False, lineterminator="\n")


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


@dataclass
class FitResult:
    """What :func:`~amage_core.train.loop.fit` returns (:meth:`TrainingState.result`)."""

    best_epoch: int            # 1-based epoch whose weights the model holds (the last one, unless
                               # selection="best")
    best_val_loss: float       # validation loss of those weights (NaN without a validation set)
    epochs_run: int
    history: pd.DataFrame      # epoch, train_loss, val_loss (NaN without one), lr, seconds


@dataclass
class TrainingState:
    """Everything besides model/EMA/optimiser/scheduler that a resumed fit needs."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    finished: bool = False
    best_model: dict | None = None    # the kept weights (selection="best": so far; the final model)
    history: dict | None = None

    def record(self, epoch: int, train_loss: float, val_loss: float, lr: float, seconds: float) -> None:
        self.epoch = epoch
        if self.history is None:
            self.history = {c: [] for c in _HISTORY_COLUMNS}
        for key, value in zip(_HISTORY_COLUMNS, (epoch, train_loss, val_loss, lr, seconds)):
            self.history[key].append(value)

    def consider(self, epoch: int, val_loss: float, weights: dict) -> None:
        """selection="best": keep ``weights`` when ``val_loss`` is the lowest so far."""
        if val_loss < self.best_val_loss:
            self.best_epoch, self.best_val_loss, self.best_model = epoch, val_loss, weights

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history or {c: [] for c in _HISTORY_COLUMNS})

    def result(self) -> FitResult:
        return FitResult(self.best_epoch, self.best_val_loss, self.epoch, self.history_frame())

    def to_checkpoint(self, fingerprint: str, model: nn.Module, ema, optimizer, scheduler) -> dict:
        device = next(model.parameters()).device
        return {
            "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint,
            "epoch": self.epoch, "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
            "finished": self.finished, "history": self.history,
            "model": model.state_dict(), "best_model": self.best_model,
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": _rng_state(device),
        }


def resume_state(path: Path, fingerprint: str, model: nn.Module, ema, optimizer, scheduler,
                 device: torch.device) -> TrainingState:
    """Restore ``model``, ``ema``, ``optimizer``, ``scheduler`` and the RNG states from the checkpoint
    at ``path``, and return the rest of its state; a checkpoint of another format or ``fingerprint``
    is a ``ValueError``."""
    ckpt = load_checkpoint(path, device)
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} was written by a different configuration, data split or version; "
                         "use another output folder or start without --resume")
    model.load_state_dict(ckpt["model"])
    if ema is not None:
        ema.load_state_dict(ckpt["ema"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"], device)
    return TrainingState(
        epoch=ckpt["epoch"], best_epoch=ckpt["best_epoch"], best_val_loss=ckpt["best_val_loss"],
        finished=ckpt["finished"], best_model=ckpt["best_model"], history=ckpt["history"])
