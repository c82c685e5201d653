"""Cross-validation of one model variant over a prepared cohort, writing a run directory.

Protocols (``TrainConfig.protocol``):

- ``nested`` (default, leak-free): subject-level K-fold stratified by age; the model is trained on
  the training fold with the fixed recipe (``amage_core.train.loop``: no epoch is chosen); an
  optional inner validation split (``val_fraction``, stratified) only draws the learning curve and,
  with ``bias_fit="validation"``, fits the bias correction. The age scaler, the FC standardisation
  and the bias correction are fit on training rows only; the test fold is used once, for the
  reported predictions.
- ``released-code`` reproduces the authors' code on purpose, to measure its optimism: the min-max
  age scaler is fit on *all* participants (test folds included), there is no inner validation, and
  the epoch is chosen on the test fold itself; the bias correction is fit on training-fold predictions.

Fusion variants start from pretrained branches (``TrainConfig.fusion_encoders``, :class:`Branches`):
the runs of the single-branch models on the same folds and seed; each fold loads the weights of the
same fold (whose fit rows must be the same) and trains the fusion with the encoders frozen or
fine-tuned (``BrainAgeModel.load_branches``). The weights of the residual late-fusion path decide
how much each branch counts, which the training participants cannot tell (every branch fits them
well): with ``blend`` runs (the same branches trained with an inner validation split,
``TrainConfig.blend_fraction``) they are fit out of sample, by least squares with weights in [0, 1]
on the blend runs' validation predictions (:func:`blend_weights`), and kept fixed; the
cross-attention and the gate then learn a correction on the training fold. ``blend_folds`` pairs of
blend runs hold out disjoint parts of the training fold (``val_part``), and the weights are fit on
all of their held-out participants (with 1 / ``blend_fraction`` pairs, every training participant:
cross-fitting). The correction reads encodings of participants the frozen encoders were trained
on, which fit far better than a test participant's, so it over-fits: how many epochs it trains (0:
the blend alone) is chosen on the blend split (:func:`choose_fusion_epochs`,
``TrainConfig.fusion_epochs``), where a fusion stage on the first pair of blend runs' encoders
trains on their fit participants and is scored on their held-out ones, as the real one is on the
test fold; the real fit keeps its weights of that epoch.

A run whose folds keep an inner validation split writes its predictions of those participants to
``fold-<k>/val_predictions.tsv`` (participant_id, age, predicted_age).

Cross-cohort (``test_cohort``): a fold ensemble. The outer folds of ``cohort`` are those of its
cross-validation, and each fold's model, fit exactly as there (the same participants, seed and
inner split), predicts every participant of ``test_cohort``; the run's prediction of a participant
is the mean over the fold models (fold ``external``; each fold's own predictions stay in its
folder). ``reuse``, the cross-validation run with the same settings, lends its finished fits
(``loop.fit``'s ``reuse``): nothing is trained twice. Every fold model trains on (K-1)/K of the
cohort, as in the within-cohort figures it is compared with.

Seeds: fold ``k`` uses ``seed + k`` for its inner split, model initialisation and fit; the outer
folds use ``seed``. ``workflow.seed_runs`` repeats a run with other seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch

from amage_core.config import (GraphConfig, ModelConfig, TrainConfig, replace, runtime_settings,
                               to_dict, train_settings)
from amage_core.evaluate.bias import BiasCorrection
from amage_core.evaluate.metrics import fold_sort_key
from amage_core.io import stable_hash, write_tsv
from amage_core.parallel import map_folds
from amage_core.train.dataset import CohortDataset, check_compatible, input_spec
from amage_core.train.loop import fit, predict
from amage_core.train.checkpoint import CHECKPOINT
from amage_core.train.rundir import (FUSION_EPOCHS, VAL_PREDICTIONS, RunDir, RunResult, cohort_identity,
                                     fold_roles, fold_scaler, fold_val_predictions, fold_weights,
                                     has_sessions, prediction_table, split_table)
from amage_core.train.scaler import AgeScaler
from amage_core.train.splits import assign_folds, fold_rows, inner_split, participant_keys

if TYPE_CHECKING:
    from torch import nn

    from amage_core.data.cohort import PreparedCohort
    from amage_core.models.spec import InputSpec

    ModelFactory = Callable[[ModelConfig, InputSpec], nn.Module]

PROTOCOLS = ("nested", "released-code")


@dataclass
class Branches:
    """The single-branch runs a fusion variant starts from (see the module docstring)."""

    runs: dict[str, RunResult]                   # "fmri" / "structural" -> run on the same folds
    # the same, with a validation split (late weights): one pair per validation part held out
    blend: list[dict[str, RunResult]] | None = None

    def identity(self) -> dict:
        return {"runs": {k: _run_hash(v) for k, v in sorted(self.runs.items())},
                "blend": [{k: _run_hash(v) for k, v in sorted(pair.items())} for pair in self.blend or []]}


@dataclass
class FoldSplit:
    """Which rows play which part in one fold."""

    name: str                  # "0".."K-1"
    seed: int
    train_rows: np.ndarray     # training cohort rows of the training fold (fit + val)
    fit_rows: np.ndarray       # rows the weights are fit on
    val_rows: np.ndarray       # inner validation rows (empty under released-code)
    test_rows: np.ndarray      # rows of the test source (the cohort, or the test cohort)
    scaler: AgeScaler


def plan_folds(cohort: PreparedCohort, cfg: TrainConfig, test_cohort: PreparedCohort | None = None,
               assignment: pd.DataFrame | None = None) -> pd.DataFrame:
    """``participant_id, fold`` (fold as str) of every participant of ``cohort``: the fold that
    tests them within the cohort (cross-cohort: the fold whose model does not train on them).

    ``assignment`` when given (e.g. another run's folds.tsv), else stratified K-fold
    (:func:`assign_folds`).
    """
    if assignment is None:
        assignment = assign_folds(cohort.participants, cfg.folds, cfg.outer_fold_seed, cfg.age_bins)
    table = assignment[["participant_id", "fold"]].astype(str).drop_duplicates()
    if table["participant_id"].duplicated().any():
        raise ValueError("the fold assignment gives a participant several folds")
    return table.reset_index(drop=True)


def fold_names(folds: pd.DataFrame) -> list[str]:
    return sorted(set(folds["fold"].astype(str)), key=fold_sort_key)


def outer_rows(cohort: PreparedCohort, folds: pd.DataFrame, name: str,
               test_cohort: PreparedCohort | None = None,
               cfg: TrainConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training rows of ``cohort``, test rows of the test source) of outer fold ``name``: the
    fold's test participants, or with ``test_cohort`` all of its participants; with
    ``cfg.train_fraction`` below 1, that fraction of the training participants (stratified on age,
    seeded by the outer folds' seed and the fold: the same subset for every model and seed)."""
    train_rows, test_rows = fold_rows(cohort.participants, folds, name)
    if test_cohort is not None:
        test_rows = np.arange(test_cohort.n)
    if cfg is not None and cfg.train_fraction < 1.0:
        seed = cfg.outer_fold_seed + _fold_number(name)
        train_rows, _ = inner_split(cohort.participants, train_rows, 1.0 - cfg.train_fraction, seed,
                                    cfg.age_bins)
    return train_rows, test_rows


def fold_split(cohort: PreparedCohort, folds: pd.DataFrame, name: str, cfg: TrainConfig,
               test_cohort: PreparedCohort | None = None) -> FoldSplit:
    """The rows of fold ``name`` and its age scaler, under ``cfg.protocol``."""
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {cfg.protocol!r}; use one of {PROTOCOLS}")
    part = cohort.participants
    train_rows, test_rows = outer_rows(cohort, folds, name, test_cohort, cfg)
    seed = fold_split_seed(cfg, name)
    ages = part["age"].to_numpy(dtype=float)
    if cfg.protocol == "nested":
        if cfg.val_fraction > 0:
            fit_rows, val_rows = inner_split(part, train_rows, cfg.val_fraction, seed, cfg.age_bins,
                                             cfg.val_part)
        else:
            fit_rows, val_rows = np.sort(train_rows), np.array([], dtype=np.int64)
        scaler = AgeScaler.fit(ages[fit_rows], participant_keys(part, fit_rows), cfg.target)
    else:  # released-code: the authors' scaler sees every participant, test ones included
        fit_rows, val_rows = train_rows, np.array([], dtype=np.int64)
        all_ages, all_keys = ages, participant_keys(part)
        if test_cohort is not None:
            all_ages = np.concatenate([ages, test_cohort.participants["age"].to_numpy(dtype=float)])
            all_keys = np.concatenate([all_keys, participant_keys(test_cohort.participants)])
        scaler = AgeScaler.fit(all_ages, all_keys, "minmax")
    return FoldSplit(name, seed, train_rows, fit_rows, val_rows, test_rows, scaler)


def cross_validate(cohort: PreparedCohort, model_cfg: ModelConfig, train_cfg: TrainConfig,
                   graph_cfg: GraphConfig, out: Path | str, variant: str | None = None,
                   test_cohort: PreparedCohort | None = None, resume: bool = False,
                   progress: bool = True, folds: list[str | int] | None = None,
                   assignment: pd.DataFrame | None = None,
                   build: ModelFactory | None = None,
                   pretrained: Branches | None = None,
                   reuse: RunResult | None = None) -> RunResult:
    """Cross-validate (or cross-cohort test) one model variant; write and return the run.

    ``variant`` overrides ``model_cfg.variant``. ``folds`` restricts this call to some folds (other
    processes may run the rest; the run is assembled once all are done). ``assignment`` imposes a
    fold table (``participant_id, fold``). ``build`` makes the model (default
    ``amage_core.models.build_model``; any module with ``modalities`` returning a ``ModelOutput``
    works). ``pretrained`` (fusion variants): the finished runs of the branches on the same folds
    (see the module docstring). ``reuse`` (cross-cohort): the cross-validation run whose finished
    fits the folds take instead of training (``loop.fit``'s ``reuse``; a fold whose fit differs
    trains). A finished run with the same configuration is reused;
    ``resume`` also keeps finished folds and continues interrupted fits from their checkpoints.
    """
    if variant is not None:
        model_cfg = replace(model_cfg, variant=variant)
    run = RunDir(out)
    fold_table = plan_folds(cohort, train_cfg, test_cohort, assignment)
    identity = {
        "kind": "model", "variant": model_cfg.variant, "protocol": train_cfg.protocol,
        **run_settings(model_cfg, train_cfg, graph_cfg),
        "data": cohort_identity(cohort), "test_data": cohort_identity(test_cohort),
        "folds": stable_hash(fold_table.to_numpy().tolist()),
        "pretrained": pretrained.identity() if pretrained else {},
    }
    if run.is_done(stable_hash(identity)):
        return run.load()
    names = fold_names(fold_table)
    extra = {"data_path": str(cohort.root),
             "test_data_path": str(test_cohort.root) if test_cohort is not None else None,
             "runtime": runtime_settings(train_cfg),
             "seeds": {"folds": train_cfg.outer_fold_seed,
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
                           resume, caches, build, pretrained, reuse) for split in todo], train_cfg, progress)
    return run.finish(names, config_hash, ensemble=test_cohort is not None)


def run_settings(model_cfg: ModelConfig, train_cfg: TrainConfig, graph_cfg: GraphConfig) -> dict:
    """The model, training and graph settings a deep run's results depend on, and only those
    (``models.amagenet.model_settings``, ``config.train_settings``; the graph only for a model
    with the fMRI branch): its identity. A DenseNet run is the same run whatever the GAT, the
    graph or the fusion settings, so a change to them never trains it again."""
    from amage_core.models.amagenet import model_parts, model_settings

    parts = model_parts(model_cfg)
    return {"model": model_settings(model_cfg), "train": train_settings(train_cfg, parts),
            "graph": to_dict(graph_cfg) if "fmri" in parts else None}


def needs_blend(model_cfg: ModelConfig, train_cfg: TrainConfig) -> bool:
    """Whether a fusion variant's late-fusion weights are fit on blend runs (see the module docstring):
    a late-fusion path, a blend fraction, and the nested protocol (the released one has no validation)."""
    from amage_core.models.amagenet import resolve_config

    return (train_cfg.blend_fraction > 0 and train_cfg.protocol == "nested"
            and resolve_config(model_cfg).fusion.late_fusion)


def fusion_branches(cohort: PreparedCohort, model_cfg: ModelConfig, train_cfg: TrainConfig,
                    graph_cfg: GraphConfig, root: Path | str, progress: bool = True) -> Branches | None:
    """Train (or reuse) under ``root`` the branch runs a fusion variant starts from: ``fmri`` and
    ``structural`` on the whole training folds, and ``*-blend`` (``*-blend-1``, ... with
    ``blend_folds``) with the validation splits that fit the late-fusion weights (see the module
    docstring); cross-validations of ``cohort``, also for a cross-cohort fusion run (its fold
    models are the same). ``None`` for a single-branch variant or
    ``fusion_encoders="scratch"``. (The book's workflow names its runs itself and reuses the
    single-branch runs it shows; this is for ``amage train`` on a prepared cohort folder.)"""
    from amage_core.models.amagenet import branch_variants, is_fusion

    if not is_fusion(model_cfg) or train_cfg.fusion_encoders == "scratch":
        return None
    root = Path(root)

    def runs(cfg: TrainConfig, suffix: str) -> dict[str, RunResult]:
        return {branch: cross_validate(cohort, replace(model_cfg, variant=variant, **overrides), cfg,
                                       graph_cfg, root / f"{branch}{suffix}", resume=True, progress=progress)
                for branch, (variant, overrides) in branch_variants(model_cfg).items()}

    branches = Branches(runs(train_cfg, ""))
    if needs_blend(model_cfg, train_cfg):
        branches.blend = [runs(replace(train_cfg, **split), "-blend" + (f"-{j}" if j else ""))
                          for j, split in enumerate(blend_splits(train_cfg))]
    return branches


def blend_splits(train_cfg: TrainConfig) -> list[dict]:
    """The training settings that make each pair of blend runs out of the branch runs: the
    validation split of ``blend_fraction``, part 0, 1, ... (``blend_folds`` pairs)."""
    return [{"val_fraction": train_cfg.blend_fraction, "val_part": j} for j in range(train_cfg.blend_folds)]


def fold_split_seed(cfg: TrainConfig, name: str) -> int:
    return cfg.seed + _fold_number(name)


def _fold_number(name: str) -> int:
    """A numbered fold's number; 0 for a named one (a held-out site)."""
    return int(name) if name.isdigit() else 0


MIN_BLEND = 10       # fewer validation participants: the late weights are learnt in sample instead


def blend_weights(blend: list[dict[str, RunResult]], fold: str, fit_ids: set[str] | None = None) -> dict:
    """Late-fusion weights of fold ``fold``, fit out of sample: least squares (with an intercept) of
    age on the fMRI and structural blend runs' predictions of their validation participants (those
    of every pair of blend runs, each holding out another part of the training fold), each weight
    in [0, 1]: a branch is weighed, never stretched (unbounded, a table encoder trained 5 epochs on
    ABIDE, whose predictions barely varied, got weight 19 and the fusion MAE 7.1 against its
    branches' 3.9 and 4.2). ``fit_ids``: the fusion fold's training participants (its test fold
    left out), which must hold every validation participant (else the weights would be fit on test
    participants: an error); no participant may be held out by two pairs.
    Returns ``{"w_fmri", "w_structural", "intercept_years", "n"}``."""
    from scipy.optimize import lsq_linear

    merged = pd.concat([_held_out_predictions(pair, fold) for pair in blend], ignore_index=True)
    if merged["participant_id"].duplicated().any():
        raise ValueError(f"fold {fold}: the blend runs {[pair['fmri'].path for pair in blend]} hold out "
                         "some participants twice (the same validation part?)")
    if fit_ids is not None and not set(merged["participant_id"]) <= fit_ids:
        raise ValueError(f"fold {fold}: the blend runs {[pair['fmri'].path for pair in blend]} hold out "
                         "participants that this fold does not train on (other outer folds?)")
    if len(merged) < MIN_BLEND:
        return {"source": f"in sample: only {len(merged)} validation participants (< {MIN_BLEND})",
                "n": int(len(merged))}
    x = merged[["fmri", "structural"]].to_numpy(dtype=float)
    y = merged["age"].to_numpy(dtype=float)
    w = lsq_linear(x - x.mean(0), y - y.mean(), bounds=(0.0, 1.0)).x
    if not w.any():             # neither branch predicts the validation ages: keep the average
        w = np.array([0.5, 0.5])
    return {"w_fmri": float(w[0]), "w_structural": float(w[1]),
            "intercept_years": float(y.mean() - x.mean(0) @ w), "n": int(len(y)),
            "source": f"validation predictions of {len(blend)} pair(s) of blend runs"}


def _held_out_predictions(pair: dict[str, RunResult], fold: str) -> pd.DataFrame:
    """``participant_id, age, fmri, structural``: one pair of blend runs' predictions of the
    validation participants of fold ``fold`` (the same participants in both branches)."""
    tables = [fold_val_predictions(pair[branch], fold).rename(columns={"predicted_age": branch})
              for branch in ("fmri", "structural")]
    merged = tables[0].merge(tables[1].drop(columns="age"), on="participant_id", validate="one_to_one")
    if len(merged) != len(tables[0]) or len(merged) != len(tables[1]):
        raise ValueError(f"fold {fold}: the blend runs' validation participants differ")
    return merged


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _run_hash(result: RunResult) -> str:
    from amage_core.io import read_json

    return read_json(Path(result.path) / "done.json")["config_hash"]


def _built(build: ModelFactory | None, model_cfg: ModelConfig, cohort: PreparedCohort,
           fit_rows: np.ndarray, cfg: TrainConfig) -> nn.Module:
    """A new model for ``cohort``, initialised from ``cfg.seed`` (FC statistics of ``fit_rows``
    when ``cfg.standardize_fc``)."""
    if build is None:
        from amage_core.models import build_model as build

    torch.manual_seed(cfg.seed)
    model = build(model_cfg, input_spec(cohort))
    if cfg.standardize_fc and "fmri" in model.modalities and hasattr(model, "set_input_statistics"):
        model.set_input_statistics(torch.from_numpy(np.asarray(cohort.connectivity[fit_rows],
                                                               dtype=np.float32)))
    return model


def choose_fusion_epochs(split: FoldSplit, cohort: PreparedCohort, model_cfg: ModelConfig,
                         cfg: TrainConfig, graph_cfg: GraphConfig, blend: dict[str, RunResult],
                         late_fit: dict, build: ModelFactory | None, caches: dict[int, dict],
                         out_dir: Path, resume: bool, progress: bool, reuse: Path | None = None) -> dict:
    """How many epochs the fusion stage of fold ``split.name`` trains (the module docstring says why).

    A fusion model starts from the blend runs' fold models (encoders trained on their fit
    participants, late weights ``late_fit``), trains with the recipe on those fit participants and
    is scored after every epoch on the blend runs' validation participants, whose encodings are out
    of sample as a test participant's are. Epoch 0 is the blend alone. The lowest validation loss
    wins (the earliest on ties). Every participant involved belongs to the fold's training part.
    ``reuse``: a finished fit of the same choice elsewhere (``loop.fit``).
    Returns ``{"epochs", "val_loss" (epochs 0..E, scaled age), "n_fit", "n_val"}``."""
    from amage_core.train.loop import evaluate_loss, resolve_device

    part = cohort.participants
    fit_rows, val_rows, scaler = _blend_split(blend, split, part)
    model = _built(build, model_cfg, cohort, fit_rows, cfg)
    model.load_branches({branch: fold_weights(run.path, split.name) for branch, run in blend.items()},
                        cfg.fusion_encoders)
    model.set_late_weights(late_fit, scaler)
    modalities = frozenset(model.modalities)
    cache = caches.setdefault(id(cohort), {})
    train_set = CohortDataset(cohort, fit_rows, graph_cfg, scaler, modalities, augment=cfg.augment,
                              seed=split.seed, graph_cache=cache)
    val_set = CohortDataset(cohort, val_rows, graph_cfg, scaler, modalities, seed=split.seed,
                            graph_cache=cache)
    start = evaluate_loss(model, val_set, cfg, resolve_device(cfg.device))
    settings = run_settings(model_cfg, cfg, graph_cfg)
    guard = {"model": settings["model"], "graph": settings["graph"], "late": late_fit,
             "blend": {branch: _run_hash(run) for branch, run in blend.items()},
             "fit": stable_hash(participant_keys(part, fit_rows).tolist()),
             "val": stable_hash(participant_keys(part, val_rows).tolist())}
    result = fit(model, train_set, val_set, cfg, out_dir, resume=resume, progress=progress,
                 fingerprint_extra=guard, desc=f"fold {split.name} fusion epochs", reuse=reuse)
    losses = [start, *result.history["val_loss"].astype(float)]
    return {"epochs": int(np.nanargmin(losses)), "val_loss": [_json_float(v) for v in losses],
            "n_fit": int(len(fit_rows)), "n_val": int(len(val_rows))}


def _blend_split(blend: dict[str, RunResult], split: FoldSplit, part: pd.DataFrame
                 ) -> tuple[np.ndarray, np.ndarray, AgeScaler]:
    """(fit rows, validation rows, age scaler) of the blend runs' fold ``split.name`` (the same in
    both branches, and inside the fold's training part), as rows of ``part``."""
    roles = [fold_roles(result, split.name) for result in blend.values()]
    scalers = [fold_scaler(result, split.name) for result in blend.values()]
    if any(r != roles[0] for r in roles) or any(s != scalers[0] for s in scalers):
        raise ValueError(f"fold {split.name}: the blend runs {[r.path for r in blend.values()]} split "
                         "their training participants differently")
    ids = part["participant_id"].astype(str).to_numpy()
    training = set(ids[split.train_rows])
    if not roles[0]["fit"] | roles[0]["val"] <= training:
        raise ValueError(f"fold {split.name}: the blend runs train on participants outside this fold's "
                         "training part")
    rows = {role: np.flatnonzero(np.isin(ids, sorted(roles[0][role]))) for role in ("fit", "val")}
    return rows["fit"], rows["val"], scalers[0]


def _pretrained_branches(pretrained: dict[str, RunResult], split: FoldSplit, part: pd.DataFrame) -> dict:
    """State dicts of the branches' fold ``split.name``, checked to be fit on the same participants."""
    branches = {}
    fit_ids = set(part["participant_id"].astype(str).to_numpy()[split.fit_rows])
    for branch, result in pretrained.items():
        if fold_roles(result.path, split.name)["fit"] != fit_ids:
            raise ValueError(f"the pretrained {branch} run {result.path} fit fold {split.name} on other "
                             "participants (another seed, split or cohort?)")
        branches[branch] = fold_weights(result.path, split.name)
    return branches


def _run_fold(split: FoldSplit, cohort: PreparedCohort, test_cohort: PreparedCohort | None,
              model_cfg: ModelConfig, train_cfg: TrainConfig, graph_cfg: GraphConfig, run: RunDir,
              config_hash: str, resume: bool, caches: dict[int, dict],
              build: ModelFactory | None, pretrained: Branches | None,
              reuse: RunResult | None, progress: bool) -> None:
    source = test_cohort if test_cohort is not None else cohort
    cfg = replace(train_cfg, seed=split.seed)

    def lent(*parts: str) -> Path | None:
        """The checkpoint of the reused run's fit of this fold (``parts``: a sub-fit's folder)."""
        return None if reuse is None else Path(reuse.path, f"fold-{split.name}", *parts, CHECKPOINT)

    model = _built(build, model_cfg, cohort, split.fit_rows, cfg)
    modalities = frozenset(model.modalities)
    late_fit = fusion = None
    if pretrained:
        model.load_branches(_pretrained_branches(pretrained.runs, split, cohort.participants),
                            cfg.fusion_encoders)
        if pretrained.blend and getattr(model, "late", None) is not None:
            ids = cohort.participants["participant_id"].astype(str).to_numpy()
            training = set(ids[np.concatenate([split.fit_rows, split.val_rows])])
            late_fit = blend_weights(pretrained.blend, split.name, training)
            if "w_fmri" in late_fit:
                model.set_late_weights(late_fit, split.scaler)
                if cfg.fusion_epochs == "blend-split":
                    # on the first pair of blend runs (their held-out part scores the epochs)
                    fusion = choose_fusion_epochs(split, cohort, model_cfg, cfg, graph_cfg, pretrained.blend[0],
                                                  late_fit, build, caches,
                                                  run.fold_dir(split.name) / FUSION_EPOCHS, resume, progress,
                                                  lent(FUSION_EPOCHS))
    if test_cohort is not None:
        check_compatible(cohort, test_cohort, modalities)

    def dataset(which: PreparedCohort, rows: np.ndarray, augment: bool = False) -> CohortDataset:
        return CohortDataset(which, rows, graph_cfg, split.scaler, modalities, augment=augment,
                             seed=split.seed, graph_cache=caches.setdefault(id(which), {}))

    nested = train_cfg.protocol == "nested"
    train_set = dataset(cohort, split.fit_rows, augment=cfg.augment)
    test_set = dataset(source, split.test_rows)
    val_set = dataset(cohort, split.val_rows) if len(split.val_rows) else None
    select_set = val_set if nested else test_set
    part, test_part = cohort.participants, source.participants
    settings = run_settings(model_cfg, cfg, graph_cfg)
    guard = {"model": settings["model"], "graph": settings["graph"],
             "pretrained": pretrained.identity() if pretrained else {},
             "fit": stable_hash(participant_keys(part, split.fit_rows).tolist()),
             "select": stable_hash(participant_keys(part if nested else test_part,
                                                    split.val_rows if nested else split.test_rows).tolist())}
    result = fit(model, train_set, select_set, cfg, run.fold_dir(split.name), resume=resume,
                 progress=progress, fingerprint_extra=guard, desc=f"fold {split.name}",
                 selection="last" if nested else "best",
                 stop_after=fusion["epochs"] if fusion else None, reuse=lent())

    test_pred = predict(model, test_set, cfg)
    predicted = split.scaler.inverse(test_pred.scaled)
    if val_set is not None and nested:
        val_ids = part["participant_id"].astype(str).to_numpy()[split.val_rows]
        write_tsv(run.fold_dir(split.name) / VAL_PREDICTIONS, pd.DataFrame({
            "participant_id": val_ids, "age": part["age"].to_numpy(dtype=float)[split.val_rows],
            "predicted_age": split.scaler.inverse(predict(model, val_set, cfg).scaled)}))
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
    fit_record = {"kept_epoch": result.best_epoch, "val_loss": _json_float(result.best_val_loss),
                  "epochs_run": result.epochs_run,
                  "selected_on": "none" if nested else "test",
                  "n_fit": int(len(split.fit_rows)), "n_val": int(len(split.val_rows)),
                  "n_test": int(len(split.test_rows)), "seed": split.seed, "late_fusion": late_fit,
                  "fusion_epochs": fusion}
    run.write_fold(split.name, config_hash, table, roles,
                   {"scaler": split.scaler.to_dict(), "bias": bias.to_dict(), "fit": fit_record})
