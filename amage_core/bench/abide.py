"""The benchmark's ABIDE section: every ABIDE model with sites held out, as chapter 11 runs them.

:func:`abide_benchmark` runs (or reuses: the chapter's runs, with the same settings,
``amage_core.abide.settings``) each model of each ABIDE cohort and writes its figures to a JSON file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from amage_core import io
from amage_core.config import Profile, as_profile


def abide_benchmark(profile: str | Profile, out: Path | str, progress: bool = False) -> dict:
    """Run (or reuse) every ABIDE model of :data:`amage_core.abide.MODELS` with sites held out and
    write ``out`` (JSON): per cohort and model the controls' MAE and r (uncorrected and
    bias-corrected), the autism - control gap (Cohen's d and its 95% CI) and the wall time of the
    cross-validation. Without the data it writes and returns ``{"available": false, "reason": ...}``."""
    from amage_core import abide
    from amage_core.report import gap_summary

    prof = as_profile(profile)
    status = abide.availability(prof)
    result: dict[str, Any] = {"benchmark": "abide-site-held-out", "profile": prof.name,
                              "available": status.ok, "reason": status.message}
    if status.ok:
        opts = abide.settings(prof)
        result.update({"n_folds": opts["n_folds"] or prof.train.folds, "train_overrides": opts["train"],
                       "cohorts": {}})
        for name, models in opts["models"].items():
            if not models:
                continue
            labels = abide.MODELS[name]
            data = abide.load(prof, name, progress)
            runs = abide.run_models(prof, data, models, opts["n_folds"], opts["train"], progress)
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
