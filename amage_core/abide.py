"""ABIDE I (open data) through the whole pipeline: site-held-out brain age and the autism gap.

Two cohorts of a profile read the same ABIDE I PCP cache (``../shared/data/abide``, nilearn's layout):

==================  ====================================================================================
``abide``           CC200 connectivity of every participant who passes QC (both sexes)
``abide-males``     CC200 connectivity + the FreeSurfer table: the males who have a FreeSurfer row
                    (the table holds males only; everyone else is excluded at QC, reason "missing modality")
==================  ====================================================================================

Only typical controls are ever trained on. The runs are the book's own (``workflow.run`` on the
controls, ``where=CONTROLS``, with ``hold_out="site"``): folds hold whole sites out
(:mod:`amage_core.evaluate.sites`), imposed on the deep models and the baselines alike, so every
model is tested on the same participants. Autism participants are predicted by the fold model that
never saw their site (``rundir.fold_predict``: a deep model's kept weights, a baseline refit on the
same training rows), with that fold's age scaler and bias correction: controls' and autism
participants' predictions are made under the same conditions.

Run directory: the engine's (book/architecture.md section 3) plus ``autism_predictions.tsv``
(participant_id, fold, age, predicted_age, predicted_age_corrected, [gate_*], site) and
``abide.json`` (seconds the cross-validation took when it was computed).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amage_core import io
from amage_core import workflow as wf
from amage_core.baselines import BASELINES
from amage_core.config import Profile, TrainConfig, as_profile, baseline_settings, replace
from amage_core.data.cohort import PreparedCohort, select
from amage_core.evaluate.sites import folds_for_sites, site_folds
from amage_core.stats.groups import group_difference
from amage_core.train.rundir import read_predictions

FMRI_COHORT, MULTIMODAL_COHORT = "abide", "abide-males"
# models per cohort, with their table labels; the same site folds within a cohort
MODELS: dict[str, dict[str, str]] = {
    MULTIMODAL_COHORT: {"ridge-fc": "ridge (FC)", "ridge-table": "ridge (FreeSurfer)",
                        "stacking": "stacking (FC + FreeSurfer)", "fmri": "GAT (CC200)",
                        "tabular": "table encoder (FreeSurfer)", "amagenet": "AMAge-Net (GAT + table)"},
    FMRI_COHORT: {"ridge-fc": "ridge (FC)", "fmri": "GAT (CC200)"},
}
# ABIDE has no T1 here: the fusion model's structural branch is the table encoder
MODEL_OVERRIDES: dict[str, dict[str, Any]] = {"amagenet": {"smri_encoder": "table"}}
AUTISM_FILE, TIMING_FILE = "autism_predictions.tsv", "abide.json"
CONTROLS = {"dx": "control"}        # the participants every ABIDE model is trained on


@dataclass
class Availability:
    ok: bool
    message: str            # what was found, or why the ABIDE analyses are skipped


@dataclass
class AbideData:
    """One prepared ABIDE cohort split by diagnosis (``dx`` column: control / autism)."""

    name: str
    cohort: PreparedCohort      # everyone who passed QC
    controls: PreparedCohort    # typical controls: the only participants ever trained on
    autism: PreparedCohort      # autism participants: predicted by site-held-out fold models


@dataclass
class AbideRun:
    model: str
    run: Any                    # amage_core.train.rundir.RunResult on the controls
    folds: pd.DataFrame         # participant_id, site, fold of the controls
    autism: pd.DataFrame        # autism predictions (see the module docstring)
    seconds: float | None       # wall time of the cross-validation when it was computed


def availability(profile: str | Profile, name: str = FMRI_COHORT) -> Availability:
    """Whether cohort ``name`` of the profile can run: its root folder holds the ABIDE cache (or the
    folder exists, so nilearn may download into it)."""
    prof = as_profile(profile)
    if name not in prof.cohorts or prof.cohorts[name].source != "abide":
        return Availability(False, f"skipped: profile {prof.name!r} has no ABIDE cohort {name!r}")
    root = wf.resolve_path(prof.cohorts[name].root).resolve()
    shown = _shown_path(prof.cohorts[name].root)
    if (root / "ABIDE_pcp").is_dir():
        return Availability(True, f"ABIDE I found at {shown}")
    if root.is_dir():
        return Availability(True, f"ABIDE I not cached at {shown}: nilearn will try to download it")
    return Availability(False, f"skipped: ABIDE I is not at {shown} (create the folder to let nilearn "
                               "download it there, or point the profile's abide root at a copy)")


def _shown_path(configured: str) -> str:
    """The root as the profile writes it when that is relative (``../shared/data/abide``), else only
    its folder's name: messages end up in the rendered book, which must not show a machine's paths."""
    if Path(configured).is_absolute() or configured.startswith("~"):
        return f"the profile's abide root (…/{Path(configured).name})"
    return configured


def load(profile: str | Profile, name: str = FMRI_COHORT, progress: bool = False) -> AbideData:
    """The prepared cohort ``name`` (prepared on first use) and its controls / autism subsets."""
    cohort = wf.prepared(profile, name, progress)
    return AbideData(name, cohort, *split_by_diagnosis(cohort))


def load_all(profile: str | Profile, names: tuple[str, ...] = (MULTIMODAL_COHORT, FMRI_COHORT),
             progress: bool = False) -> tuple[dict[str, AbideData] | None, str]:
    """(the cohorts ``names`` loaded, a message), or (None, why they are skipped): the data is absent,
    or not cached and nilearn could not download it."""
    for name in names:
        status = availability(profile, name)
        if not status.ok:
            return None, status.message
    try:
        return {name: load(profile, name, progress) for name in names}, status.message
    except OSError as exc:          # no cache and no network (requests' errors are OSErrors)
        return None, f"skipped: ABIDE I could not be read or downloaded ({type(exc).__name__}: {exc})"


def split_by_diagnosis(cohort: PreparedCohort) -> tuple[PreparedCohort, PreparedCohort]:
    """(controls, autism) of an ABIDE cohort, from its ``dx`` column."""
    if "dx" not in cohort.participants:
        raise ValueError(f"{cohort.root}: participants.tsv has no dx column (not an ABIDE cohort?)")
    return select(cohort, CONTROLS), select(cohort, {"dx": "autism"})


def site_held_out(profile: str | Profile, data: AbideData, model: str, n_folds: int | None = None,
                  train: dict[str, Any] | None = None, progress: bool = False) -> AbideRun:
    """Cross-validate ``model`` (a variant or a baseline) on the controls with whole sites held out
    (``workflow.run(..., where=CONTROLS, hold_out="site")``), then predict the autism participants
    (see the module docstring).

    ``n_folds`` site groups (None: the profile's ``train.folds``; at least the number of sites gives
    leave-one-site-out); ``train`` overrides the profile's ``train`` section for this run. A finished
    run with the same configuration is reused (``AbideRun.seconds`` stays the first computation's)."""
    prof = as_profile(profile)
    folds = site_folds(data.controls.participants, n_folds or replace(prof.train, **(train or {})).folds)
    # the folds there are (at most one per site), so asking for more than the sites is the same run
    options = {**(train or {}), "folds": int(folds["fold"].nunique())}
    train_cfg = replace(prof.train, **options)
    if model in BASELINES:      # a baseline's run stays the same whatever the deep models' epochs
        options = {k: v for k, v in options.items() if k in baseline_settings(train_cfg)}
    t0 = time.perf_counter()
    run = wf.run(prof, data.name, model, train=options, model_overrides=MODEL_OVERRIDES.get(model),
                 where=CONTROLS, hold_out="site", progress=progress)
    if not run.complete:
        raise RuntimeError(f"{run.path}: the run did not finish every fold")
    out = Path(run.path)
    if not run.reused or not (out / TIMING_FILE).is_file():
        io.write_json(out / TIMING_FILE, {"seconds": None if run.reused else time.perf_counter() - t0})
    seconds = io.read_json(out / TIMING_FILE)["seconds"]
    autism_path = out / AUTISM_FILE
    if autism_path.is_file() and run.reused:
        autism = read_predictions(autism_path)
    else:
        autism = predict_held_out(run, data, folds, train_cfg)
        io.write_tsv(autism_path, autism)
    return AbideRun(model, run, folds, autism, seconds)


def predict_held_out(run, data: AbideData, folds: pd.DataFrame,
                     train_cfg: TrainConfig | None = None) -> pd.DataFrame:
    """Autism participants predicted by the fold of ``run`` (on the controls) that held their site
    out, with that fold's bias correction (``rundir.fold_predict`` and ``fold_bias``; ``train_cfg``:
    batch size and device of a deep model's predictions). Sites without controls: skipped."""
    from amage_core.train.rundir import fold_bias, fold_predict, prediction_table
    from amage_core.train.splits import participant_keys

    part = data.autism.participants
    target = folds_for_sites(part, folds)
    tables = []
    for fold in sorted(set(target["fold"]) - {-1}):
        rows = np.flatnonzero(target["fold"].to_numpy() == fold)
        predicted, gate = fold_predict(run, fold, data.autism, rows, train_cfg, training=data.controls)
        ages = part["age"].to_numpy(dtype=float)[rows]
        corrected = fold_bias(run, fold).apply(predicted, ages, participant_keys(part, rows))
        table = prediction_table(part, rows, str(fold), predicted, corrected, gate)
        tables.append(table.drop(columns="_row").assign(site=target["site"].to_numpy()[rows]))
    if not tables:
        return pd.DataFrame(columns=["participant_id", "fold", "age", "predicted_age",
                                     "predicted_age_corrected", "site"])
    return pd.concat(tables, ignore_index=True)


# --------------------------------------------------------------------------------------------
# The autism - control brain-age gap
# --------------------------------------------------------------------------------------------
def gap_table(result: AbideRun, data: AbideData) -> pd.DataFrame:
    """Controls' and autism participants' site-held-out predictions in one table with ``dx``,
    ``site``, ``sex`` and the gaps ``gap`` (uncorrected) and ``gap_corrected``."""
    info = data.cohort.participants[["participant_id", "sex", "site"]].astype({"participant_id": str})
    controls = result.run.predictions.drop(columns=["site"], errors="ignore").assign(dx="control")
    autism = result.autism.drop(columns=["site"], errors="ignore").assign(dx="autism")
    df = pd.concat([controls, autism], ignore_index=True).merge(info, on="participant_id", how="left",
                                                                 validate="one_to_one")
    df["gap"] = df["predicted_age"] - df["age"]
    df["gap_corrected"] = df["predicted_age_corrected"] - df["age"]
    return df


def group_gap(df: pd.DataFrame, gap: str = "gap_corrected", group: str = "dx",
              a: str = "autism", b: str = "control", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean gap per group (n, mean, SD) and a row ``a-b``: difference with a Welch 95% CI and p,
    Cohen's d with a percentile-bootstrap 95% CI, and the difference adjusted for age and site (OLS
    ``gap ~ C(group) + age + C(site)`` when a ``site`` column is present; its 95% CI):
    :func:`amage_core.stats.groups.group_difference`."""
    adjust = "age + C(site)" if "site" in df and df["site"].nunique() > 1 and "age" in df else None
    return group_difference(df, group, a, b, gap, n_boot, seed, adjust)


# --------------------------------------------------------------------------------------------
# What the chapter and the benchmark run (their tables: amage_core.report; the benchmark: bench.abide)
# --------------------------------------------------------------------------------------------
CHAPTER = "11_abide"


def settings(profile: str | Profile) -> dict[str, Any]:
    """What the ABIDE runs use: the profile's parameters of chapter ``11_abide``
    (``book.chapter_parameters``: ``n_folds``, ``deep_epochs``, ``multimodal_models``,
    ``fmri_only_models``), so the chapter
    and the benchmark share their runs. Defaults: the profile's ``train.folds`` and epochs, and every
    model of :data:`MODELS` on both cohorts. Returns ``{"n_folds", "train", "models"}`` where
    ``models`` maps each cohort to the models run on it."""
    params = as_profile(profile).book.chapter_parameters.get(CHAPTER, {})
    epochs = params.get("deep_epochs")
    models = {name: list(labels) for name, labels in MODELS.items()}
    for cohort, key in ((MULTIMODAL_COHORT, "multimodal_models"), (FMRI_COHORT, "fmri_only_models")):
        if params.get(key) is not None and cohort in models:
            unknown = sorted(set(params[key]) - set(MODELS[cohort]))
            if unknown:
                raise ValueError(f"{CHAPTER}.{key}: unknown model(s) {unknown}; known: {list(MODELS[cohort])}")
            models[cohort] = list(params[key])
    return {"n_folds": params.get("n_folds"), "train": {"epochs": epochs} if epochs else {},
            "models": models}


def run_models(profile: str | Profile, data: AbideData, models: list[str] | None = None,
               n_folds: int | None = None, train: dict[str, Any] | None = None,
               progress: bool = False) -> dict[str, AbideRun]:
    """:func:`site_held_out` for each model of ``models`` (default :data:`MODELS` of the cohort),
    all on the same site folds."""
    models = list(MODELS.get(data.name, {})) if models is None else models
    return {m: site_held_out(profile, data, m, n_folds, train, progress) for m in models}
