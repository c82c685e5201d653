"""ABIDE I (open data) through the whole pipeline: site-held-out brain age and the autism gap.

Two cohorts of a profile read the same ABIDE I PCP cache (``../shared/data/abide``, nilearn's layout):

==================  ====================================================================================
``abide``           CC200 connectivity of every participant who passes QC (both sexes)
``abide-males``     CC200 connectivity + the FreeSurfer table: the males who have a FreeSurfer row
                    (the table holds males only; everyone else is excluded at QC, reason "missing modality")
==================  ====================================================================================

Only typical controls are ever trained on. Folds hold whole sites out (:mod:`amage_core.evaluate.sites`)
and are imposed on the deep models (``cross_validate``) and the baselines (``run_baseline``) alike, so
every model is tested on the same participants. Autism participants are predicted by the fold model
that never saw their site (deep models: its kept weights; baselines: the same estimator refit on the
same training rows), with that fold's age scaler and bias correction: controls' and autism participants'
predictions are made under the same conditions.

Run directory: the engine's (book/architecture.md section 3) plus ``autism_predictions.tsv``
(participant_id, fold, site, age, predicted_age, predicted_age_corrected, [gate_*]) and
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
from amage_core.config import Profile, as_profile, baseline_settings, replace, result_settings, to_dict
from amage_core.data.cohort import PreparedCohort, subset
from amage_core.evaluate.sites import folds_for_sites, site_folds
from amage_core.stats.sex import cohens_d

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
    dx = cohort.participants["dx"].astype(str).to_numpy()
    return (subset(cohort, np.flatnonzero(dx == "control"), "dx=control"),
            subset(cohort, np.flatnonzero(dx == "autism"), "dx=autism"))


def site_held_out(profile: str | Profile, data: AbideData, model: str, n_folds: int | None = None,
                  train: dict[str, Any] | None = None, progress: bool = False) -> AbideRun:
    """Cross-validate ``model`` (a variant or a baseline) on the controls with whole sites held out,
    then predict the autism participants (see the module docstring).

    ``n_folds`` site groups (None: the profile's ``train.folds``; at least the number of sites gives
    leave-one-site-out); ``train`` overrides the profile's ``train`` section for this run. A finished
    run with the same configuration is reused (``AbideRun.seconds`` stays the first computation's)."""
    from amage_core.baselines import BASELINES, run_baseline
    from amage_core.train.cv import cross_validate

    prof = as_profile(profile)
    train_cfg = replace(prof.train, **(train or {}))
    graph_cfg = prof.graph
    model_cfg = (None if model in BASELINES
                 else replace(prof.model, variant=model, **MODEL_OVERRIDES.get(model, {})))
    folds = site_folds(data.controls.participants, n_folds or train_cfg.folds)
    assignment = folds[["participant_id", "fold"]]
    # baselines read these training settings only (epochs etc. do not matter)
    train_key = baseline_settings(train_cfg) if model_cfg is None else result_settings(train_cfg)
    key = {"cohort": data.controls.manifest.get("config_hash"), "folds": folds.to_numpy().tolist(),
           "model": model, "model_cfg": to_dict(model_cfg), "train": train_key,
           "graph": None if model_cfg is None else to_dict(graph_cfg)}
    out = wf.product_path(prof, "runs", f"{data.name}-sites-{model}", key)
    t0 = time.perf_counter()
    if model_cfg is None:
        run = run_baseline(model, data.controls, train_cfg, out, progress=progress, assignment=assignment)
    else:
        run = cross_validate(data.controls, model_cfg, train_cfg, graph_cfg, out, resume=True,
                             progress=progress, assignment=assignment,
                             pretrained=_branches(prof, data, model_cfg, train_cfg, n_folds, train, progress))
    if not run.complete:
        raise RuntimeError(f"{out}: the run did not finish every fold")
    if not run.reused or not (out / TIMING_FILE).is_file():
        io.write_json(out / TIMING_FILE, {"seconds": None if run.reused else time.perf_counter() - t0})
    seconds = io.read_json(out / TIMING_FILE)["seconds"]
    autism_path = out / AUTISM_FILE
    if autism_path.is_file() and run.reused:
        autism = pd.read_csv(autism_path, sep="\t", dtype={"participant_id": str, "fold": str})
    else:
        autism = predict_held_out(run.path, model, data, folds, train_cfg, model_cfg, graph_cfg)
        io.write_tsv(autism_path, autism)
    return AbideRun(model, run, folds, autism, seconds)


def predict_held_out(run_path: Path, model: str, data: AbideData, folds: pd.DataFrame, train_cfg,
                     model_cfg, graph_cfg) -> pd.DataFrame:
    """Autism participants predicted by the fold (of run ``run_path`` on the controls) that held
    their site out, with that fold's scaler and bias correction. Sites without controls: skipped."""
    from amage_core.evaluate.bias import BiasCorrection
    from amage_core.train.rundir import prediction_table
    from amage_core.train.splits import participant_keys

    part = data.autism.participants
    target = folds_for_sites(part, folds)
    tables = []
    for fold in sorted(set(target["fold"]) - {-1}):
        rows = np.flatnonzero(target["fold"].to_numpy() == fold)
        fold_dir = Path(run_path) / f"fold-{fold}"
        if model_cfg is None:
            predicted, gate = _refit_baseline(model, data, folds, fold, train_cfg, rows), None
        else:
            predicted, gate = _fold_model(fold_dir, data, model_cfg, graph_cfg, train_cfg, rows)
        b = io.read_json(fold_dir / "bias.json")
        bias = BiasCorrection(b["method"], b["slope"], b["intercept"], tuple(b["fitted_on"]), b["source"])
        ages = part["age"].to_numpy(dtype=float)[rows]
        corrected = bias.apply(predicted, ages, participant_keys(part, rows))
        table = prediction_table(part, rows, str(fold), predicted, corrected, gate)
        tables.append(table.drop(columns="_row").assign(site=target["site"].to_numpy()[rows]))
    if not tables:
        return pd.DataFrame(columns=["participant_id", "fold", "age", "predicted_age",
                                     "predicted_age_corrected", "site"])
    return pd.concat(tables, ignore_index=True)


def _fold_model(fold_dir: Path, data: AbideData, model_cfg, graph_cfg, train_cfg,
                rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted age (n,), gate (n, G) or None) of autism ``rows`` by a fold's best checkpoint."""
    from amage_core.models import build_model
    from amage_core.train.checkpoint import CHECKPOINT, load_checkpoint
    from amage_core.train.dataset import CohortDataset, input_spec
    from amage_core.train.loop import predict
    from amage_core.train.scaler import AgeScaler

    ckpt = load_checkpoint(fold_dir / CHECKPOINT)
    model = build_model(model_cfg, input_spec(data.controls))
    model.load_state_dict(ckpt["best_model"] if ckpt.get("best_model") is not None else ckpt["model"])
    s = io.read_json(fold_dir / "scaler.json")
    scaler = AgeScaler.from_dict(s)
    dataset = CohortDataset(data.autism, rows, graph_cfg, scaler, frozenset(model.modalities))
    pred = predict(model, dataset, train_cfg)
    if not np.array_equal(pred.rows, rows):
        raise RuntimeError(f"{fold_dir}: predictions came back in another order than the rows asked for")
    return scaler.inverse(pred.scaled), pred.gate


def _refit_baseline(model: str, data: AbideData, folds: pd.DataFrame, fold: int, train_cfg,
                    rows: np.ndarray) -> np.ndarray:
    """Refit baseline ``model`` on fold ``fold``'s training controls (as ``run_baseline`` did: same
    estimator, seed and rows, so the same fit) and predict autism ``rows``."""
    from amage_core.baselines import _design, make_estimator
    from amage_core.train.cv import outer_rows

    train_rows, _ = outer_rows(data.controls, folds[["participant_id", "fold"]].astype(str), str(fold))
    x_train, blocks = _design(model, data.controls)
    x_test, _ = _design(model, data.autism)
    estimator = make_estimator(model, train_cfg.seed, blocks)
    estimator.fit(x_train[train_rows], data.controls.ages.astype(float)[train_rows])
    return estimator.predict(x_test[rows])


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
    ``gap ~ C(group) + age + C(site)`` when a ``site`` column is present; its 95% CI)."""
    import statsmodels.formula.api as smf
    from scipy import stats

    x = df.loc[df[group] == a, gap].to_numpy(dtype=float)
    y = df.loc[df[group] == b, gap].to_numpy(dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"the gap comparison needs at least two {a!r} and two {b!r} participants "
                         f"(have {len(x)} and {len(y)})")
    rows = [{"group": g, "n": len(v), "mean_gap": v.mean(), "sd_gap": v.std(ddof=1)} for g, v in ((a, x), (b, y))]
    welch = stats.ttest_ind(x, y, equal_var=False)
    ci = welch.confidence_interval(0.95)
    rng = np.random.default_rng(seed)
    boot = [cohens_d(rng.choice(x, len(x)), rng.choice(y, len(y))) for _ in range(n_boot)]
    diff = {"group": f"{a}-{b}", "n": len(x) + len(y), "mean_gap": x.mean() - y.mean(),
            "ci_low": ci.low, "ci_high": ci.high, "p": welch.pvalue, "cohens_d": cohens_d(x, y),
            "d_ci_low": np.percentile(boot, 2.5), "d_ci_high": np.percentile(boot, 97.5)}
    if "site" in df and df["site"].nunique() > 1 and "age" in df:
        d = df[[gap, group, "age", "site"]].rename(columns={gap: "g", group: "grp"})
        fit = smf.ols(f"g ~ C(grp, Treatment({b!r})) + age + C(site)", d).fit()
        term = f"C(grp, Treatment({b!r}))[T.{a}]"
        low, high = fit.conf_int().loc[term]
        diff.update({"adjusted": fit.params[term], "adj_ci_low": low, "adj_ci_high": high,
                     "adj_p": fit.pvalues[term]})
    return pd.DataFrame(rows + [diff]).set_index("group")


# --------------------------------------------------------------------------------------------
# Everything a chapter or the benchmark shows
# --------------------------------------------------------------------------------------------
CHAPTER = "11_abide"


def _branches(prof: Profile, data: AbideData, model_cfg, train_cfg, n_folds: int | None,
              train: dict[str, Any] | None, progress: bool):
    """A fusion variant's pretrained branches on the same site folds, as ``workflow.run`` gives
    them: the GAT and the table encoder alone (and the same with a validation split for the
    late-fusion weights); ``None`` for other models or ``fusion_encoders="scratch"``."""
    from amage_core.train.cv import Branches, needs_blend

    if not wf.is_fusion(model_cfg) or train_cfg.fusion_encoders == "scratch":
        return None
    pairs = (("fmri", "fmri"), ("structural", "tabular"))
    branches = Branches({b: site_held_out(prof, data, v, n_folds, train, progress).run for b, v in pairs})
    if needs_blend(model_cfg, train_cfg):
        blend = {**(train or {}), "val_fraction": train_cfg.blend_fraction}
        branches.blend = {b: site_held_out(prof, data, v, n_folds, blend, progress).run for b, v in pairs}
    return branches


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


def cohort_table(datasets: dict[str, AbideData]) -> pd.DataFrame:
    """Per cohort and diagnosis: participants, sites, males, median age and range."""
    rows = []
    for name, d in datasets.items():
        for dx, c in (("control", d.controls), ("autism", d.autism)):
            p = c.participants
            rows.append({"cohort": name, "group": dx, "n": len(p), "sites": p["site"].nunique(),
                         "males": int((p["sex"] == "M").sum()), "age median": p["age"].median(),
                         "age range": f"{p['age'].min():.1f}-{p['age'].max():.1f}"})
    return pd.DataFrame(rows).set_index(["cohort", "group"]).round(1)


def runs_table(results: dict[str, AbideRun], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Pooled site-held-out accuracy of each model on the controls (uncorrected predictions: the
    age-dependent correction is for the gap analysis only), with the wall time of the cross-validation."""
    from amage_core.evaluate.metrics import regression_metrics

    rows = {}
    for model, r in results.items():
        df = r.run.predictions
        u = regression_metrics(df["age"].to_numpy(float), df["predicted_age"].to_numpy(float))
        rows[(labels or {}).get(model, model)] = {
            "MAE": u["mae"], "RMSE": u["rmse"], "R²": u["r2"], "r": u["pearson_r"], "r(gap, age)": u["gap_age_r"],
            "Spearman(gap, age)": u["gap_age_spearman"], "n": int(u["n"]),
            "time (s)": "reused" if r.seconds is None else int(round(r.seconds))}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model").round(2).fillna("n/a")


def gap_summary(results: dict[str, AbideRun], data: AbideData, labels: dict[str, str] | None = None,
                gap: str = "gap_corrected") -> pd.DataFrame:
    """Autism minus control brain-age gap of each model (:func:`group_gap` row ``autism-control``)."""
    rows = {(labels or {}).get(m, m): group_gap(gap_table(r, data), gap).loc["autism-control"]
            for m, r in results.items()}
    table = pd.DataFrame.from_dict(rows, orient="index").drop(columns=["sd_gap"], errors="ignore")
    return table.rename(columns={"mean_gap": "difference (y)"}).rename_axis("model").round(3)


def describe_gaps(gaps: pd.DataFrame) -> str:
    """One sentence per sign: which models' 95% interval of Cohen's d excludes zero (a table of
    :func:`gap_summary`)."""
    def listed(rows: pd.DataFrame) -> str:
        return ", ".join(f"{m} (d = {r['cohens_d']:.2f} [{r['d_ci_low']:.2f}, {r['d_ci_high']:.2f}])"
                         for m, r in rows.iterrows())

    older, younger = gaps[gaps["d_ci_low"] > 0], gaps[gaps["d_ci_high"] < 0]
    neither = gaps.drop(index=[*older.index, *younger.index])
    parts = []
    if len(younger):
        parts.append(f"Autism participants' brains look younger than controls' with {listed(younger)}.")
    if len(older):
        parts.append(f"They look older with {listed(older)}.")
    if len(neither):
        parts.append(f"No difference can be told from zero with {', '.join(neither.index)}.")
    return " ".join(parts)


def abide_benchmark(profile: str | Profile, out: Path | str, progress: bool = False) -> dict:
    """Run (or reuse) every ABIDE model of :data:`MODELS` with sites held out and write ``out``
    (JSON): per cohort and model the controls' MAE and r (uncorrected and bias-corrected), the
    autism - control gap (Cohen's d and its 95% CI) and the wall time of the cross-validation.
    Without the data it writes and returns ``{"available": false, "reason": ...}``."""
    prof = as_profile(profile)
    status = availability(prof)
    result: dict[str, Any] = {"benchmark": "abide-site-held-out", "profile": prof.name,
                              "available": status.ok, "reason": status.message}
    if status.ok:
        opts = settings(prof)
        result.update({"n_folds": opts["n_folds"] or prof.train.folds, "train_overrides": opts["train"],
                       "cohorts": {}})
        for name, models in opts["models"].items():
            if not models:
                continue
            labels = MODELS[name]
            data = load(prof, name, progress)
            runs = run_models(prof, data, models, opts["n_folds"], opts["train"], progress)
            gaps = gap_summary(runs, data)
            entries = {}
            for model, r in runs.items():
                u, c = r.run.metrics["uncorrected"]["pooled"], r.run.metrics["corrected"]["pooled"]
                g = gaps.loc[model]
                entries[model] = {"label": labels[model], "mae": u["mae"], "r": u["pearson_r"],
                                  "mae_corrected": c["mae"], "r_corrected": c["pearson_r"], "n": u["n"],
                                  "seconds": r.seconds, "reused": bool(r.run.reused),
                                  "autism_gap_d": float(g["cohens_d"]),
                                  "autism_gap_d_ci": [float(g["d_ci_low"]), float(g["d_ci_high"])],
                                  "run": str(r.run.path)}
            result["cohorts"][name] = {"n_controls": data.controls.n, "n_autism": data.autism.n,
                                       "n_sites": int(data.controls.participants["site"].nunique()),
                                       "models": entries}
    io.write_json(Path(out), result)
    return result
