"""Tables that chapters show: the profile in use and the paper's claims beside this repository's results."""
from __future__ import annotations

import numpy as np
import pandas as pd

from amage_core.config import Profile, as_profile, to_dict

# The authors' reported results (abstract of the paper), quoted for comparison only.
PAPER_CLAIMS = {
    "camcan": {"mae": 5.09, "rmse": 6.52, "r2": 0.87, "r": 0.94},
    "oasis3": {"mae": 4.29, "rmse": 5.59, "r2": 0.58, "r": 0.77},
}

load = as_profile   # the name chapters call: ``report.load(profile)``


def profile_summary(profile: Profile) -> pd.DataFrame:
    """One row per setting that shapes the results (cohorts, grids, model sizes, training)."""
    rows = [("profile", "name", profile.name), ("profile", "description", profile.description)]
    for name, c in profile.cohorts.items():
        where = (f"synthetic {c.synth.preset}, n={c.synth.n_subjects}, {c.synth.voxel_size:g} mm, "
                 f"seed {c.synth.seed}" if c.source == "synthetic" else f"{c.source} data")
        rows.append(("cohort", name, where))
    rows.append(("prep", "atlas", profile.prep.atlas))
    rows.append(("prep", "T1 grid", "x".join(map(str, profile.prep.t1_shape))))
    t = profile.train
    rows.append(("train", "protocol", f"{t.folds}-fold CV ({t.protocol}), {t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g}, seed {t.seed}"))
    m = to_dict(profile.model)
    rows.append(("model", "GAT", str(m["gat"])))
    rows.append(("model", "DenseNet", str(m["densenet"])))
    rows.append(("model", "fusion", str(m["fusion"])))
    return pd.DataFrame(rows, columns=["section", "setting", "value"]).set_index(["section", "setting"])


# --------------------------------------------------------------------------------------------
# Run products as tables
# --------------------------------------------------------------------------------------------
SHOWN_METRICS = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "pearson_r": "r", "gap_age_r": "r(gap, age)",
                 "gap_age_spearman": "Spearman(gap, age)"}


def _accuracy(run) -> tuple[dict, dict, dict]:
    """Pooled, fold-mean and fold-SD metrics of a run's **uncorrected** predictions, computed from its
    predictions table (so every metric of :data:`SHOWN_METRICS` is there for old runs too)."""
    from amage_core.evaluate.metrics import regression_metrics

    df = run.predictions
    pooled = regression_metrics(df["age"].to_numpy(float), df["predicted_age"].to_numpy(float))
    per_fold = [regression_metrics(g["age"].to_numpy(float), g["predicted_age"].to_numpy(float))
                for _, g in df.groupby(df["fold"].astype(str))] if "fold" in df else []

    def stat(key, sd: bool):
        values = [f[key] for f in per_fold if f[key] is not None]
        if len(values) != len(per_fold) or len(values) < (2 if sd else 1):
            return None                                  # undefined in a fold, or one fold: no SD
        return float(np.std(values, ddof=1) if sd else np.mean(values))

    return (pooled, {k: stat(k, False) for k in SHOWN_METRICS}, {k: stat(k, True) for k in SHOWN_METRICS})


def _value(x, digits: int):
    return "n/a" if x is None else round(float(x), digits)


def metrics_summary(runs: dict, digits: int = 2) -> pd.DataFrame:
    """One row per run: accuracy of the **uncorrected** predictions, pooled over the test
    participants, and the MAE's mean ± SD over folds. Bias-corrected accuracy is never shown: the
    age-dependent correction uses each test participant's age (see :mod:`amage_core.evaluate.metrics`).

    A set of seed runs (:class:`~amage_core.evaluate.seeds.SeedRuns`) shows its seed ensemble's
    metrics, the MAE's mean ± SD over the seeds and the number of seeds; a single run counts one."""
    rows = {}
    for name, run in runs.items():
        pooled, mean, sd = _accuracy(run)
        row = {"MAE": _value(pooled["mae"], digits)}
        if hasattr(run, "spread"):
            spread = run.spread()["mae"]
            row["MAE (seed mean ± SD)"] = _pm(spread["mean"], spread["sd"], digits)
            row["seeds"] = len(run.runs)
        else:
            row["seeds"] = 1
        row["MAE (fold mean ± SD)"] = _pm(mean["mae"], sd["mae"], digits)
        row.update({label: _value(pooled[key], digits) for key, label in SHOWN_METRICS.items() if key != "mae"})
        row["n"] = int(pooled["n"])
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    if "MAE (seed mean ± SD)" in table:
        table["MAE (seed mean ± SD)"] = table["MAE (seed mean ± SD)"].fillna("(one run)")
    return table


def _pm(mean, sd, digits: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if sd is not None else f"{mean:.{digits}f}"


def histories(run) -> dict[str, pd.DataFrame]:
    """Per-fold learning curves of a deep-model run (``train.rundir.fold_histories``)."""
    from amage_core.train.rundir import fold_histories

    return fold_histories(run.path)


def with_participants(run, cohort, columns=("sex",)) -> pd.DataFrame:
    """A run's predictions joined with participant columns of its (test) cohort."""
    cols = ["participant_id", *[c for c in columns if c in cohort.participants]]
    info = cohort.participants[cols].drop_duplicates("participant_id")
    return run.predictions.merge(info, on="participant_id", how="left", validate="many_to_one")


def paper_comparison(runs: dict, data_label: dict[str, str]) -> pd.DataFrame:
    """The paper's numbers beside this repository's, per cohort: ``runs`` maps a cohort key of
    :data:`PAPER_CLAIMS` to its AMAge-Net run; ``data_label`` names the data each run used."""
    rows = []
    for cohort, run in runs.items():
        ours = run.metrics["uncorrected"]["pooled"]
        for key, label in (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²"), ("r", "r")):
            ours_key = "pearson_r" if key == "r" else key
            rows.append({"cohort": cohort, "metric": label, "paper": PAPER_CLAIMS[cohort][key],
                         "this repository": round(ours[ours_key], 2), "data used": data_label[cohort]})
    return pd.DataFrame(rows).set_index(["cohort", "metric"])


def data_label(profile: Profile, name: str, cohort) -> str:
    """What data a cohort of the profile is, for tables: e.g. ``synthetic camcan-like, n=234``."""
    cc = profile.cohorts[name]
    kind = f"synthetic {cc.synth.preset}" if cc.source == "synthetic" else f"{cc.source} (real)"
    return f"{kind}, n={cohort.n}"


def parameter_table(profile: Profile, cohort, variants: list[str]) -> pd.DataFrame:
    """Trainable parameters of each variant, per named submodule, as built for ``cohort``."""
    from amage_core.config import replace
    from amage_core.models import build_model
    from amage_core.models.amagenet import count_parameters
    from amage_core.train.dataset import input_spec

    spec = input_spec(cohort)
    rows = {v: count_parameters(build_model(replace(profile.model, variant=v), spec)) for v in variants}
    return pd.DataFrame.from_dict(rows, orient="index").fillna(0).astype(int).rename_axis("variant")


def oracle_bounds(profile: Profile, name: str) -> dict[str, float]:
    """The synthetic cohort's oracle MAEs (an **unreachable** bound: an ideal observer of the latent
    ages; see :mod:`amage_core.synth.oracle`) for T1 alone, fMRI alone and both, on this cohort's
    latent ages; empty for real data, where no such bound exists."""
    oracle = _truth_oracle(profile, name)
    if oracle is None:
        return {}
    oracle = oracle["cohort"]
    return {"oracle T1": oracle["smri"]["mae"], "oracle fMRI": oracle["fmri"]["mae"],
            "oracle both": oracle["both"]["mae"]}


def _truth_oracle(profile: Profile, name: str) -> dict | None:
    from amage_core import workflow as wf
    from amage_core.synth import load_truth

    if profile.cohorts[name].source != "synthetic":
        return None
    return load_truth(wf.synthetic_source(profile, name, progress=False)).oracle


# the modalities a model sees (its floor and oracle): fMRI-only and T1/table-only models by name,
# every other model both
MODEL_MODALITY = {"fmri": "fmri", "gcn": "fmri", "flat-gat": "fmri", "ridge-fc": "fmri", "svr-fc": "fmri",
                  "smri": "smri", "sfcn": "smri", "tabular": "smri", "brainage-gpr": "smri", "ridge-table": "smri"}
MODALITY_LABEL = {"smri": "T1", "fmri": "fMRI", "both": "both"}
FLOOR_AIM = 1.25       # a model within 25% of its floor meets the aim


def bounds(profile: Profile, name: str) -> dict[str, dict[str, float]]:
    """{"floor"|"oracle": {"smri"|"fmri"|"both": MAE}} of a synthetic cohort (population Monte Carlo
    values of ``oracle.json``: the reachable floor and the unreachable oracle); {} for real data."""
    oracle = _truth_oracle(profile, name)
    if oracle is None:
        return {}
    return {"floor": {k: oracle["floor"][k]["mae"] for k in MODALITY_LABEL},
            "oracle": {k: oracle["population"][k]["mae"] for k in MODALITY_LABEL}}


def floor_reference(profile: Profile, name: str, modality: str = "both") -> dict[str, float]:
    """Reference lines for a figure: the floor and the (unreachable) oracle of ``modality``."""
    b = bounds(profile, name)
    if not b:
        return {}
    label = MODALITY_LABEL[modality]
    return {f"floor, {label}": b["floor"][modality], f"oracle, {label} (unreachable)": b["oracle"][modality]}


def floor_table(runs: dict, profile: Profile, name: str, models: dict[str, str] | None = None,
                digits: int = 2) -> pd.DataFrame | str:
    """Each run's MAE against the reachable floor of the modalities it sees (ratio: MAE / floor; the
    aim is at most :data:`FLOOR_AIM`) with the unreachable oracle beside it. ``models`` maps a run's
    label to its model name (the labels are the names when absent). A sentence for real data."""
    b = bounds(profile, name)
    if not b:
        return "real data: no floor (the truth is unknown)"
    rows = {}
    for label, run in runs.items():
        modality = MODEL_MODALITY.get((models or {}).get(label, label), "both")
        mae = _accuracy(run)[0]["mae"]
        floor = b["floor"][modality]
        rows[label] = {"modalities": MODALITY_LABEL[modality], "MAE": round(mae, digits),
                       "floor MAE": round(floor, digits), "MAE / floor": round(mae / floor, digits),
                       f"within {round(100 * (FLOOR_AIM - 1))}% of the floor": "yes" if mae <= FLOOR_AIM * floor else "no",
                       "oracle MAE (unreachable)": round(b["oracle"][modality], digits)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def fusion_headroom(profile: Profile, name: str) -> str:
    """A sentence, computed from the cohort's reachable floors, on how much a second modality can
    lower the error at best: the floor with both modalities against each modality's own floor. A
    fusion cannot be expected to gain more over a branch than the floors do, unless that branch is
    further from its own floor. "" for real data (no floor)."""
    floor = bounds(profile, name).get("floor")
    if not floor:
        return ""
    both, t1, fmri = floor["both"], floor["smri"], floor["fmri"]
    return (f"What the two modalities can give together, on this cohort: a Bayes-optimal observer of "
            f"the noise-free scans reaches MAE {both:.2f} with both, {t1:.2f} with the T1 alone and "
            f"{fmri:.2f} with the fMRI alone. Adding the fMRI to the T1 lowers the floor by "
            f"{1 - both / t1:.1%}: a fusion model can beat its T1 branch by more than that only if "
            f"the branch is further from its own floor than the fusion is from the joint one.")


def paired_tests(runs: dict, reference: str) -> pd.DataFrame:
    """Each run against ``reference`` on the same participants (uncorrected predictions): MAE
    difference (run - reference) and the two-sided Wilcoxon signed-rank p-value on absolute errors."""
    from amage_core.evaluate.compare import compare_runs
    from amage_core.evaluate.verdicts import format_p

    rows = {}
    for name, run in runs.items():
        if name == reference:
            continue
        c = compare_runs(run.predictions, runs[reference].predictions, "uncorrected")
        rows[name] = {"MAE": round(c.mae_a, 2), f"MAE − {reference}": round(c.mae_difference, 2),
                      "Wilcoxon p": format_p(c.p_value), "n": int(c.n)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def fold_spread(runs: dict) -> pd.DataFrame:
    """Pooled value and SD over folds of each metric of the uncorrected predictions, per run
    (columns ``mae``, ``mae_sd``, ...)."""
    rows = {}
    for name, run in runs.items():
        pooled, _, sd = _accuracy(run)
        rows[name] = {**{k: pooled[k] for k in SHOWN_METRICS}, **{f"{k}_sd": sd[k] for k in SHOWN_METRICS}}
    return pd.DataFrame.from_dict(rows, orient="index").astype(float)


def compare_sentence(runs: dict, a: str, b: str) -> str:
    """A sentence, generated from the runs, on whether run ``a`` has lower errors than run ``b``
    (:func:`amage_core.evaluate.verdicts.compare`: seed spread and paired test; a run with ``.runs``
    gives every seed)."""
    from amage_core.evaluate import verdicts

    v = verdicts.compare(verdicts.tables_of(runs[a]), verdicts.tables_of(runs[b]), a, b)
    return verdicts.verdict_sentence(v)


NOT_APPLICABLE = "–"


def _is_p(column) -> bool:
    name = str(column).lower()
    return name in {"p", "p-value", "pvalue"} or name.endswith((" p", "_p", "p>|t|", "p>|z|")) or name.startswith("p_")


def _is_count(column) -> bool:
    name = str(column).lower()
    return name == "n" or name.startswith("n_") or name.endswith(" n")


def readable(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A table as a reader wants it: p-values as "< 0.001" (else three decimals), counts as integers,
    other numbers rounded to ``digits``, and "–" (not NaN) in cells that do not apply."""
    from amage_core.evaluate.verdicts import format_p

    out = table.copy()
    for col in out.columns:
        values = out[col]
        if _is_p(col) and pd.api.types.is_numeric_dtype(values):
            out[col] = [NOT_APPLICABLE if pd.isna(v) else format_p(float(v)) for v in values]
        elif _is_count(col) and pd.api.types.is_numeric_dtype(values):
            out[col] = [NOT_APPLICABLE if pd.isna(v) else int(round(float(v))) for v in values]
        elif pd.api.types.is_float_dtype(values):
            out[col] = values.round(digits)
    return out.astype(object).where(out.notna(), NOT_APPLICABLE)


def qc_table(cohorts: dict) -> pd.DataFrame:
    """Included/excluded counts by reason with their age and sex, per prepared cohort
    (``qc_summary.tsv`` written by the preparation)."""
    parts = [pd.read_csv(c.root / "qc_summary.tsv", sep="\t").assign(cohort=name) for name, c in cohorts.items()]
    table = pd.concat(parts, ignore_index=True).set_index(["cohort", "status", "category"])
    return readable(table, digits=1)


def recipe_table(profile: Profile) -> pd.DataFrame:
    """The training recipe every deep variant of ``profile`` is trained with (``amage_core.train.loop``)."""
    t = profile.train
    rows = [
        ("optimiser", f"AdamW, lr {t.lr:g}, weight decay {t.weight_decay:g} on weights only (not norms, biases, embeddings)"),
        ("schedule", f"{t.epochs} epochs, linear warmup over {t.warmup_fraction:.0%} of the steps, cosine to "
                     f"{t.final_lr_fraction:g} x lr; batch {t.batch_size}, full batches only"),
        ("weights kept", f"EMA over {t.ema_epochs:g} epochs" if t.ema_epochs > 0 else "the last epoch's"),
        ("BatchNorm", "statistics recomputed on the training data before evaluation" if t.bn_recalibrate
         else "running statistics as trained"),
        ("epoch selection", "none (fixed budget)" if t.protocol == "nested" else "best epoch on the test fold (released code)"),
        ("targets", f"{t.target} age scaling fit on the training fold"),
        ("inputs", "FC edges standardised with training statistics" if t.standardize_fc else "FC as prepared (Fisher z)"),
        ("T1 augmentation", "MONAI RandAffine, RandBiasField, RandGaussianNoise" if t.augment else "none"),
        ("fusion", {"frozen": "pretrained single-branch encoders, frozen",
                    "finetune": f"pretrained single-branch encoders, fine-tuned at {t.encoder_lr_scale:g} x lr",
                    "scratch": "trained jointly from scratch"}[t.fusion_encoders]),
        ("late-fusion weights", _blend_description(t)),
        ("inner validation", f"{t.val_fraction:.0%} of each training fold, learning curves only" if t.val_fraction
         else "none: trained on the whole training fold"),
        ("seeds", f"{t.seeds} per deep model (seed {t.seed} + 1000 i, the same outer folds)"),
    ]
    return pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")


def _blend_description(t) -> str:
    """Where the late-fusion weights are fit (``train.cv.blend_weights``)."""
    if t.blend_fraction <= 0 or t.protocol != "nested":
        return "learnt in sample with the fusion stage"
    if t.blend_folds == 1:
        return (f"least squares, each in [0, 1], on a pair of branch runs holding out {t.blend_fraction:.0%} "
                "of each training fold")
    from amage_core.config import validation_parts

    every = t.blend_folds == validation_parts(t.blend_fraction)
    return (f"least squares, each in [0, 1], on {t.blend_folds} pairs of branch runs holding out disjoint "
            f"parts of {t.blend_fraction:.0%} of each training fold"
            + (": every training participant once (cross-fitting)" if every else ""))


def fusion_weights(run) -> pd.DataFrame:
    """Per fold of a fusion run: the residual late-fusion path's learned weights on the fMRI and the
    structural branch (``late.weight``; they start at 0.5 and 0.5) and bias, and the spread of the
    gate across that fold's test participants (mean, SD, 5th and 95th percentile of each
    participant's mean gate value); with the fusion stage's epochs chosen on the blend split
    (``train.cv.choose_fusion_epochs``), the epochs kept and the held-out loss (scaled age) of the
    blend alone (epoch 0) and of the kept epoch."""
    from amage_core.train.rundir import fold_fit, fold_weights, run_fold_names

    runs = getattr(run, "runs", [run])
    rows = []
    for i, r in enumerate(runs):
        gates = [c for c in r.predictions.columns if c.startswith("gate_")]
        for fold in run_fold_names(r):
            weights = fold_weights(r, fold)
            row = {"seed run": i, "fold": fold}
            if "late.weight" in weights:
                w = weights["late.weight"].tolist()
                row.update({"w fMRI": round(w[0], 3), "w structural": round(w[1], 3),
                            "bias": round(float(weights["late.bias"]), 3)})
            chosen = fold_fit(r, fold).get("fusion_epochs")
            if chosen:
                losses = chosen["val_loss"]
                row.update({"fusion epochs": chosen["epochs"], "held-out loss, blend": round(losses[0], 4),
                            "held-out loss, kept": round(losses[chosen["epochs"]], 4)})
            if gates:
                g = r.predictions.loc[r.predictions["fold"].astype(str) == fold, gates].mean(axis=1)
                row.update({"gate mean": round(float(g.mean()), 3), "gate SD": round(float(g.std(ddof=1)), 3),
                            "gate 5%": round(float(g.quantile(0.05)), 3), "gate 95%": round(float(g.quantile(0.95)), 3)})
            rows.append(row)
    return pd.DataFrame(rows).set_index(["seed run", "fold"])


def seed_table(runs: dict, digits: int = 2) -> pd.DataFrame:
    """One row per model (runs or seed runs): seeds, MAE mean ± SD over seeds, the seed ensemble's MAE."""
    from amage_core.evaluate import verdicts

    return verdicts.seed_table({name: verdicts.tables_of(run) for name, run in runs.items()}, digits)


# --------------------------------------------------------------------------------------------
# ABIDE (chapter 11): site-held-out runs on the controls and the autism - control gap
# --------------------------------------------------------------------------------------------
def abide_cohort_table(datasets: dict) -> pd.DataFrame:
    """Per ABIDE cohort (:class:`~amage_core.abide.AbideData`) and diagnosis: participants, sites,
    males, median age and range."""
    rows = []
    for name, d in datasets.items():
        for dx, c in (("control", d.controls), ("autism", d.autism)):
            p = c.participants
            rows.append({"cohort": name, "group": dx, "n": len(p), "sites": p["site"].nunique(),
                         "males": int((p["sex"] == "M").sum()), "age median": p["age"].median(),
                         "age range": f"{p['age'].min():.1f}-{p['age'].max():.1f}"})
    return pd.DataFrame(rows).set_index(["cohort", "group"]).round(1)


def abide_runs_table(results: dict, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Pooled site-held-out accuracy of each model (:class:`~amage_core.abide.AbideRun`) on the
    controls (uncorrected predictions: the age-dependent correction is for the gap analysis only),
    with the wall time of the cross-validation."""
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


def gap_summary(results: dict, data, labels: dict[str, str] | None = None,
                gap: str = "gap_corrected") -> pd.DataFrame:
    """Autism minus control brain-age gap of each model (row ``autism-control`` of
    :func:`amage_core.abide.group_gap` on :func:`amage_core.abide.gap_table`)."""
    from amage_core.abide import gap_table, group_gap

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
