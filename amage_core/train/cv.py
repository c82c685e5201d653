"""Cross-validation of one model variant over a prepared cohort, writing a run directory.

Protocols (``TrainConfig.protocol``):

- ``nested`` (default, leak-free): subject-level K-fold stratified by age; inside each training fold
  an inner validation split (``val_fraction``, stratified) chooses the epoch (early stopping); the
  age scaler is fit on the training fold, the bias correction on the inner-validation predictions
  (``bias_fit``); the test fold is used once, for the reported predictions.
- ``released-code`` reproduces the authors' code on purpose, to measure its optimism: the age scaler
  is fit on *all* participants (test folds included), there is no inner validation, and the epoch is
  chosen on the test fold itself; the bias correction is fit on training-fold predictions.

Cross-cohort (``test_cohort``): the model is fit on all of ``cohort`` (with its inner validation
split) and predicts every participant of ``test_cohort`` (fold ``external``).

Seeds: fold ``k`` uses ``seed + k`` for its inner split, model initialisation and fit (``external``
uses ``seed``); the outer folds use ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch

from amage_core.config import GraphConfig, ModelConfig, TrainConfig, replace, to_dict
from amage_core.evaluate.bias import BiasCorrection
from amage_core.evaluate.metrics import fold_sort_key
from amage_core.io import stable_hash
from amage_core.train.dataset import CohortDataset, check_compatible, input_spec
from amage_core.train.loop import RUNTIME_FIELDS, fit, map_folds, predict
from amage_core.train.rundir import (EXTERNAL, RunDir, RunResult, cohort_identity, has_sessions,
                                     prediction_table, split_table)
from amage_core.train.scaler import AgeScaler
from amage_core.train.splits import assign_folds, fold_rows, inner_split, participant_keys

if TYPE_CHECKING:
    from torch import nn

    from amage_core.data.cohort import PreparedCohort
    from amage_core.models.spec import InputSpec

    ModelFactory = Callable[[ModelConfig, InputSpec], nn.Module]

PROTOCOLS = ("nested", "released-code")


@dataclass
class FoldSplit:
    """Which rows play which part in one fold."""

    name: str                  # "0".."K-1" or "external"
    seed: int
    train_rows: np.ndarray     # training cohort rows of the training fold (fit + val)
    fit_rows: np.ndarray       # rows the weights are fit on
    val_rows: np.ndarray       # inner validation rows (empty under released-code)
    test_rows: np.ndarray      # rows of the test source (the cohort, or the test cohort)
    scaler: AgeScaler


def plan_folds(cohort: PreparedCohort, cfg: TrainConfig, test_cohort: PreparedCohort | None = None,
               assignment: pd.DataFrame | None = None) -> pd.DataFrame:
    """``participant_id, fold`` (fold as str) of every tested subject.

    Within a cohort: ``assignment`` when given (e.g. another run's folds.tsv), else stratified
    K-fold (:func:`assign_folds`). Cross-cohort: every test-cohort subject in fold ``external``.
    """
    if test_cohort is not None:
        ids = pd.unique(test_cohort.participants["participant_id"].astype(str))
        return pd.DataFrame({"participant_id": ids, "fold": EXTERNAL})
    if assignment is None:
        assignment = assign_folds(cohort.participants, cfg.folds, cfg.seed, cfg.age_bins)
    table = assignment[["participant_id", "fold"]].astype(str).drop_duplicates()
    if table["participant_id"].duplicated().any():
        raise ValueError("the fold assignment gives a participant several folds")
    return table.reset_index(drop=True)


def fold_names(folds: pd.DataFrame) -> list[str]:
    return sorted(set(folds["fold"].astype(str)), key=fold_sort_key)


def outer_rows(cohort: PreparedCohort, folds: pd.DataFrame, name: str,
               test_cohort: PreparedCohort | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training rows of ``cohort``, test rows of the test source) of outer fold ``name``."""
    if name == EXTERNAL:
        if test_cohort is None:
            raise ValueError("fold 'external' needs a test cohort")
        return np.arange(cohort.n), np.arange(test_cohort.n)
    return fold_rows(cohort.participants, folds, name)


def fold_split(cohort: PreparedCohort, folds: pd.DataFrame, name: str, cfg: TrainConfig,
               test_cohort: PreparedCohort | None = None) -> FoldSplit:
    """The rows of fold ``name`` and its age scaler, under ``cfg.protocol``."""
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {cfg.protocol!r}; use one of {PROTOCOLS}")
    part = cohort.participants
    train_rows, test_rows = outer_rows(cohort, folds, name, test_cohort)
    seed = fold_split_seed(cfg, name)
    ages = part["age"].to_numpy(dtype=float)
    if cfg.protocol == "nested":
        fit_rows, val_rows = inner_split(part, train_rows, cfg.val_fraction, seed, cfg.age_bins)
        scaler = AgeScaler.fit(ages[train_rows], participant_keys(part, train_rows))
    else:  # released-code: the authors' scaler sees every participant, test ones included
        fit_rows, val_rows = train_rows, np.array([], dtype=np.int64)
        all_ages, all_keys = ages, participant_keys(part)
        if test_cohort is not None:
            all_ages = np.concatenate([ages, test_cohort.participants["age"].to_numpy(dtype=float)])
            all_keys = np.concatenate([all_keys, participant_keys(test_cohort.participants)])
        scaler = AgeScaler.fit(all_ages, all_keys)
    return FoldSplit(name, seed, train_rows, fit_rows, val_rows, test_rows, scaler)


def cross_validate(cohort: PreparedCohort, model_cfg: ModelConfig, train_cfg: TrainConfig,
                   graph_cfg: GraphConfig, out: Path | str, variant: str | None = None,
                   test_cohort: PreparedCohort | None = None, resume: bool = False,
                   progress: bool = True, folds: list[str | int] | None = None,
                   assignment: pd.DataFrame | None = None,
                   build: ModelFactory | None = None) -> RunResult:
    """Cross-validate (or cross-cohort test) one model variant; write and return the run.

    ``variant`` overrides ``model_cfg.variant``. ``folds`` restricts this call to some folds (other
    processes may run the rest; the run is assembled once all are done). ``assignment`` imposes a
    fold table (``participant_id, fold``). ``build`` makes the model (default
    ``amage_core.models.build_model``; any module with ``modalities`` returning a ``ModelOutput``
    works). A finished run with the same configuration is reused;
    ``resume`` also keeps finished folds and continues interrupted fits from their checkpoints.
    """
    if variant is not None:
        model_cfg = replace(model_cfg, variant=variant)
    run = RunDir(out)
    fold_table = plan_folds(cohort, train_cfg, test_cohort, assignment)
    identity = {
        "kind": "model", "variant": model_cfg.variant, "protocol": train_cfg.protocol,
        "model": to_dict(model_cfg), "graph": to_dict(graph_cfg),
        "train": {k: v for k, v in to_dict(train_cfg).items() if k not in RUNTIME_FIELDS},
        "data": cohort_identity(cohort), "test_data": cohort_identity(test_cohort),
        "folds": stable_hash(fold_table.to_numpy().tolist()),
    }
    if run.is_done(stable_hash(identity)):
        return run.load()
    names = fold_names(fold_table)
    extra = {"data_path": str(cohort.root),
             "test_data_path": str(test_cohort.root) if test_cohort is not None else None,
             "runtime": {k: getattr(train_cfg, k) for k in RUNTIME_FIELDS},
             "seeds": {"folds": train_cfg.seed,
                       **{f"fold-{n}": fold_split_seed(train_cfg, n) for n in names}}}
    config_hash = run.start(identity, extra)
    run.write_folds(fold_table)
    selected = names if folds is None else [str(f) for f in folds]
    unknown = sorted(set(selected) - set(names))
    if unknown:
        raise ValueError(f"no fold named {unknown}; folds: {names}")
    todo = [fold_split(cohort, fold_table, name, train_cfg, test_cohort) for name in selected
            if not (resume and run.fold_done(name, config_hash))]
    # each fold is seeded from its own split: the results do not depend on where or when it runs
    caches: dict[int, dict] = {}     # graphs shared by the folds of one process
    map_folds(_run_fold, [(split, cohort, test_cohort, model_cfg, train_cfg, graph_cfg, run, config_hash,
                           resume, caches, build) for split in todo], train_cfg, progress)
    return run.finish(names, config_hash)


def fold_split_seed(cfg: TrainConfig, name: str) -> int:
    return cfg.seed + (int(name) if name.isdigit() else 0)


def _run_fold(split: FoldSplit, cohort: PreparedCohort, test_cohort: PreparedCohort | None,
              model_cfg: ModelConfig, train_cfg: TrainConfig, graph_cfg: GraphConfig, run: RunDir,
              config_hash: str, resume: bool, caches: dict[int, dict],
              build: ModelFactory | None, progress: bool) -> None:
    if build is None:
        from amage_core.models import build_model as build

    source = test_cohort if test_cohort is not None else cohort
    cfg = replace(train_cfg, seed=split.seed)
    torch.manual_seed(split.seed)
    model = build(model_cfg, input_spec(cohort))
    modalities = frozenset(model.modalities)
    if test_cohort is not None:
        check_compatible(cohort, test_cohort, modalities)

    def dataset(which: PreparedCohort, rows: np.ndarray, augment: bool = False) -> CohortDataset:
        return CohortDataset(which, rows, graph_cfg, split.scaler, modalities, augment=augment,
                             seed=split.seed, graph_cache=caches.setdefault(id(which), {}))

    nested = train_cfg.protocol == "nested"
    train_set = dataset(cohort, split.fit_rows, augment=cfg.augment)
    test_set = dataset(source, split.test_rows)
    select_set = dataset(cohort, split.val_rows) if nested else test_set
    part, test_part = cohort.participants, source.participants
    guard = {"model": to_dict(model_cfg), "graph": to_dict(graph_cfg),
             "fit": stable_hash(participant_keys(part, split.fit_rows).tolist()),
             "select": stable_hash(participant_keys(part if nested else test_part,
                                                    split.val_rows if nested else split.test_rows).tolist())}
    result = fit(model, train_set, select_set, cfg, run.fold_dir(split.name), resume=resume,
                 progress=progress, fingerprint_extra=guard, desc=f"fold {split.name}")

    test_pred = predict(model, test_set, cfg)
    predicted = split.scaler.inverse(test_pred.scaled)
    if nested and cfg.bias_fit == "validation":
        bias_rows, bias_set, bias_source = split.val_rows, select_set, "validation"
    else:
        bias_rows, bias_source = split.fit_rows, "training"
        bias_set = dataset(cohort, split.fit_rows)
    bias_pred = split.scaler.inverse(predict(model, bias_set, cfg).scaled)
    bias = BiasCorrection.fit(part["age"].to_numpy(dtype=float)[bias_rows], bias_pred,
                              participant_keys(part, bias_rows), cfg.bias_method, bias_source)
    test_ages = test_part["age"].to_numpy(dtype=float)[split.test_rows]
    corrected = bias.apply(predicted, test_ages, participant_keys(test_part, split.test_rows))

    table = prediction_table(test_part, split.test_rows, split.name, predicted, corrected,
                             test_pred.gate, with_session=has_sessions(test_part))
    roles = split_table([("fit", part, split.fit_rows), ("val", part, split.val_rows),
                         ("test", test_part, split.test_rows)])
    fit_record = {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                  "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
                  "selected_on": "validation" if nested else "test",
                  "n_fit": int(len(split.fit_rows)), "n_val": int(len(split.val_rows)),
                  "n_test": int(len(split.test_rows)), "seed": split.seed}
    run.write_fold(split.name, config_hash, table, roles,
                   {"scaler": split.scaler.to_dict(), "bias": bias.to_dict(), "fit": fit_record})
