"""Tables that chapters show: the profile in use and the paper's claims beside this repository's results."""
from __future__ import annotations

import pandas as pd

from amage_core.config import Profile, load_profile, to_dict

# The authors' reported results (abstract of the paper), quoted for comparison only.
PAPER_CLAIMS = {
    "camcan": {"mae": 5.09, "rmse": 6.52, "r2": 0.87, "r": 0.94},
    "oasis3": {"mae": 4.29, "rmse": 5.59, "r2": 0.58, "r": 0.77},
}


def load(profile: str | Profile) -> Profile:
    """A profile by name/path, or the object itself."""
    return profile if isinstance(profile, Profile) else load_profile(profile)


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
SHOWN_METRICS = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "pearson_r": "r", "gap_age_r": "r(gap, age)"}


def metrics_summary(runs: dict, correction: str = "uncorrected", digits: int = 2) -> pd.DataFrame:
    """One row per run: pooled metrics and the mean ± SD over folds of ``correction``
    (``uncorrected`` or ``corrected``), computed by the run (``metrics.json``)."""
    rows = {}
    for name, run in runs.items():
        section = run.metrics[correction]
        row = {}
        for key, label in SHOWN_METRICS.items():
            mean, sd = section["fold_mean"].get(key), section["fold_sd"].get(key)
            row[label] = section["pooled"][key]
            row[f"{label} (fold mean ± SD)"] = _pm(mean, sd, digits)
        row["n"] = section["pooled"]["n"]
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    return table.round(digits)


def _pm(mean, sd, digits: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if sd is not None else f"{mean:.{digits}f}"


def both_corrections(run, digits: int = 2) -> pd.DataFrame:
    """The pooled metrics of one run, uncorrected and bias-corrected side by side."""
    rows = {kind: {label: run.metrics[kind]["pooled"][key] for key, label in SHOWN_METRICS.items()}
            for kind in ("uncorrected", "corrected")}
    return pd.DataFrame(rows).T.round(digits)


def histories(run) -> dict[str, pd.DataFrame]:
    """Per-fold training histories (``fold-<k>/history.csv``) of a deep-model run."""
    out = {}
    for path in sorted(run.path.glob("fold-*/history.csv")):
        out[path.parent.name.removeprefix("fold-")] = pd.read_csv(path)
    return out


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
    """The synthetic cohort's oracle MAEs (best any model could reach; see ``amage_core.synth``) for
    T1 alone, fMRI alone and both; empty for real data, where no such bound exists."""
    from amage_core import workflow as wf
    from amage_core.synth import load_truth

    if profile.cohorts[name].source != "synthetic":
        return {}
    oracle = load_truth(wf.synthetic_source(profile, name, progress=False)).oracle["cohort"]
    return {"oracle T1": oracle["smri"]["mae"], "oracle fMRI": oracle["fmri"]["mae"],
            "oracle both": oracle["both"]["mae"]}


def paired_tests(runs: dict, reference: str, correction: str = "uncorrected") -> pd.DataFrame:
    """Each run against ``reference`` on the same participants: MAE difference (run - reference) and
    the two-sided Wilcoxon signed-rank p-value on absolute errors."""
    from amage_core.evaluate.compare import compare_runs

    rows = {}
    for name, run in runs.items():
        if name == reference:
            continue
        c = compare_runs(run.predictions, runs[reference].predictions, correction)
        rows[name] = {"MAE": c.mae_a, f"MAE − {reference}": c.mae_difference, "Wilcoxon p": c.p_value, "n": c.n}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model").round(4)


def fold_spread(runs: dict, correction: str = "uncorrected") -> pd.DataFrame:
    """Pooled value and SD over folds of each metric, per run (columns ``mae``, ``mae_sd``, ...)."""
    rows = {}
    for name, run in runs.items():
        section = run.metrics[correction]
        rows[name] = {**{k: section["pooled"][k] for k in SHOWN_METRICS},
                      **{f"{k}_sd": section["fold_sd"][k] for k in SHOWN_METRICS}}
    return pd.DataFrame.from_dict(rows, orient="index").astype(float)


def qc_table(cohorts: dict) -> pd.DataFrame:
    """Included/excluded counts by reason with their age and sex, per prepared cohort
    (``qc_summary.tsv`` written by the preparation)."""
    parts = [pd.read_csv(c.root / "qc_summary.tsv", sep="\t").assign(cohort=name) for name, c in cohorts.items()]
    table = pd.concat(parts, ignore_index=True).set_index(["cohort", "status", "category"])
    return table.round(1)
