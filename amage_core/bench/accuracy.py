"""Accuracy: every model on the same camcan-like cohort and folds, against the cohort's reachable floor.

Models run through :func:`amage_core.workflow.run` with the benchmark profile
(:func:`~amage_core.bench.settings.accuracy_profile`), so deep models and baselines share the folds
and reuse finished runs. The scikit-learn baselines run with single-threaded BLAS (threadpoolctl):
their matrices are small, and on a busy 2-core machine two BLAS threads made a brainage-gpr fit
about 10x slower (spinning threads), which turned stacking's hundreds of nested GPR fits into hours.

Accuracy is that of the uncorrected predictions (the age-dependent bias correction uses each test
participant's age and flatters any model; :mod:`amage_core.evaluate.metrics`). Every model is
measured against the **floor** of the modalities it sees (:mod:`amage_core.synth.floor`: the
Bayes-optimal error given each participant's noise-free generative parameters, a bound a model can
approach), with the **oracle** (an ideal observer of the latent ages, unreachable) beside it. The
verdict compares AMAge-Net with the multimodal floor (aim: within 25%) and with every other model
(aim: better than all), and says why when it is not.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from amage_core.bench.settings import FLOOR_MARGIN, BenchSettings
from amage_core.config import Profile, to_dict



BLAS_THREADS_FOR_BASELINES = 1
logger = logging.getLogger(__name__)


def _epoch_seconds(run_path: Path) -> float | None:
    """Sum of the training epochs' seconds recorded in a deep run's histories (None for baselines)."""
    import pandas as pd

    files = sorted(Path(run_path).glob("fold-*/history.csv"))
    return round(float(sum(pd.read_csv(f)["seconds"].sum() for f in files)), 1) if files else None


def _metrics(run, seconds: float, earlier: dict[str, float]) -> dict[str, Any]:
    """Pooled metrics of seed runs (``workflow.seed_runs``; a baseline's one run): ``mae`` etc. of
    the seed ensemble, and ``mae_seeds`` (one per seed, ``SeedRuns.per_seed``), their mean and SD
    (``SeedRuns.spread``; None for one seed), the mean r(gap, age) over seeds. ``seconds``: this
    call's wall time, None when finished runs were reused; then ``computed_seconds`` is the time an
    earlier benchmark (``earlier``: run path -> seconds) measured for them. ``epoch_seconds``: the
    training epochs' time the runs recorded."""
    from amage_core.evaluate.metrics import regression_metrics

    df = run.predictions
    pooled = regression_metrics(df["age"].to_numpy(float), df["predicted_age"].to_numpy(float))
    spread = run.spread()
    epochs = [_epoch_seconds(r.path) for r in run.runs]
    measured = None if run.reused else round(seconds, 1)
    return {"mae": pooled["mae"], "rmse": pooled["rmse"], "r2": pooled["r2"], "r": pooled["pearson_r"],
            "gap_age_r": pooled["gap_age_r"], "gap_age_spearman": pooled["gap_age_spearman"], "n": pooled["n"],
            "seeds": len(run.runs), "mae_seeds": run.per_seed()["mae"].astype(float).tolist(),
            "mae_seed_mean": spread["mae"]["mean"], "mae_seed_sd": spread["mae"]["sd"],
            "gap_age_r_seed_mean": spread["gap_age_r"]["mean"],
            "seconds": measured, "reused": bool(run.reused),
            "computed_seconds": measured if measured is not None else earlier.get(str(run.path)),
            "epoch_seconds": round(sum(epochs), 1) if all(e is not None for e in epochs) else None,
            "run": str(run.path)}


def earlier_seconds(previous: dict[str, Any] | None) -> dict[str, float]:
    """Run path -> seconds it took to compute, from an earlier benchmark's results (if any)."""
    acc = (previous or {}).get("accuracy", {})
    models = [*acc.get("models", {}).values(), *acc.get("transfer", {}).get("models", {}).values()]
    return {m["run"]: m.get("computed_seconds") or m.get("seconds") for m in models
            if m.get("run") and (m.get("computed_seconds") or m.get("seconds"))}


def _threads(model: str):
    """Single-threaded BLAS for the scikit-learn baselines (see the module docstring)."""
    from amage_core.baselines import BASELINES

    if model not in BASELINES:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=BLAS_THREADS_FOR_BASELINES, user_api="blas")


def _bounds(profile: Profile, name: str) -> dict[str, dict[str, float]]:
    """{"floor"|"oracle": {"smri"|"fmri"|"both": MAE}} of a synthetic cohort ({} for real data)."""
    from amage_core.report import bounds

    return bounds(profile, name)


def _against_floor(models: dict[str, dict], floor: dict[str, float]) -> None:
    """Add each model's floor (of the modalities it sees) and its MAE / floor, in place."""
    from amage_core.report import MODEL_MODALITY

    for name, m in models.items():
        modality = MODEL_MODALITY.get(name, "both")
        m["modalities"] = modality
        m["floor_mae"] = floor.get(modality)
        m["ratio_to_floor"] = m["mae"] / floor[modality] if floor.get(modality) else None


def setup(profile: Profile) -> dict[str, Any]:
    """What the accuracy figures were measured on: cohorts, grid, model sizes, training schedule."""
    t, m = profile.train, to_dict(profile.model)
    cohorts = {name: {"preset": profile.cohorts[name].synth.preset, "n_subjects": profile.cohorts[name].synth.n_subjects,
                      "voxel_size_mm": profile.cohorts[name].synth.voxel_size, "seed": profile.cohorts[name].synth.seed}
               for name in ("camcan", "oasis3")}
    return {"profile": profile.name, "cohorts": cohorts, "atlas": profile.prep.atlas,
            "baseline_blas_threads": BLAS_THREADS_FOR_BASELINES,
            "t1_shape": list(profile.prep.t1_shape), "graph": to_dict(profile.graph),
            "model": {k: m[k] for k in ("gat", "densenet", "sfcn", "fusion", "head_hidden")},
            "train": {k: getattr(t, k) for k in ("epochs", "batch_size", "lr", "weight_decay",
                                                   "folds", "val_fraction", "protocol", "seed", "seeds")}}


def accuracy(profile: Profile, s: BenchSettings, device: str, progress: bool = True, log=logger.info,
             previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """``accuracy`` section of the benchmark (see the module docstring); ``previous``: an earlier
    benchmark's results, for the computing time of runs reused now."""
    earlier = earlier_seconds(previous)
    from amage_core import workflow as wf

    train = {"device": device}
    t0 = time.perf_counter()
    camcan = wf.prepared(profile, "camcan", progress)
    oasis3 = wf.prepared(profile, "oasis3", progress)
    data_seconds = time.perf_counter() - t0
    models: dict[str, Any] = {}
    for model in s.models:
        log(f"bench accuracy: {model} on camcan-like (n={camcan.n})")
        t0 = time.perf_counter()
        with _threads(model):
            run = wf.seed_runs(profile, "camcan", model, train=train, progress=progress)
        models[model] = _metrics(run, time.perf_counter() - t0, earlier)
    transfer: dict[str, Any] = {}
    for model in s.transfer_models:
        log(f"bench accuracy: {model} camcan-like -> oasis3-like")
        t0 = time.perf_counter()
        with _threads(model):
            run = wf.seed_runs(profile, "camcan", model, test_cohort="oasis3", train=train, progress=progress)
        transfer[model] = _metrics(run, time.perf_counter() - t0, earlier)
    b, bt = _bounds(profile, "camcan"), _bounds(profile, "oasis3")
    floor, oracle = b.get("floor", {}), b.get("oracle", {})
    _against_floor(models, floor)
    _against_floor(transfer, bt.get("floor", {}))
    out = {"setup": setup(profile), "n_included": {"camcan": int(camcan.n), "oasis3": int(oasis3.n)},
           "data_seconds": round(data_seconds, 1), "models": models,
           "floor_mae": floor.get("both"), "floor_mae_by_modality": floor,
           "oracle_mae": oracle.get("both"), "oracle_mae_by_modality": oracle,
           "transfer": {"train": "camcan", "test": "oasis3", "models": transfer,
                        "floor_mae": bt.get("floor", {}).get("both"), "floor_mae_by_modality": bt.get("floor", {}),
                        "oracle_mae": bt.get("oracle", {}).get("both"),
                        "oracle_mae_by_modality": bt.get("oracle", {})}}
    out["verdict"] = verdict(models, floor, oracle)
    out["computing_seconds"] = round(sum(m["computed_seconds"] or 0 for m in (*models.values(), *transfer.values())), 1)
    return out


def _mae(m: dict[str, Any]) -> float:
    """A model's MAE for verdicts: the mean over its seeds (a baseline's one run)."""
    return m.get("mae_seed_mean", m["mae"])


def targets(models: dict[str, dict]) -> list[dict[str, Any]]:
    """The aims of the training work (issue 15), each ``{"target", "value", "met"}`` (``met`` None
    when a model it needs was not run): AMAge-Net below stacking and at least 5% below each
    single-branch model, DenseNet at or below PCA+GPR, GAT at or below ridge on FC (seed means),
    every deep model's SD over seeds at most 0.3 years, AMAge-Net's r(gap, age) at least -0.3."""
    def has(*names):
        return all(n in models for n in names)

    out = []

    def add(target, value, met):
        out.append({"target": target, "value": value, "met": met})

    a = models.get("amagenet")
    if has("amagenet", "stacking"):
        add("AMAge-Net below stacking", f"{_mae(a):.2f} vs {_mae(models['stacking']):.2f}",
            _mae(a) < _mae(models["stacking"]))
    for branch in ("smri", "fmri"):
        if has("amagenet", branch):
            b = _mae(models[branch])
            add(f"AMAge-Net at least 5% below {branch}", f"{_mae(a):.2f} vs {b:.2f} ({_mae(a) / b - 1:+.1%})",
                _mae(a) <= 0.95 * b)
    for deep, base in (("smri", "brainage-gpr"), ("fmri", "ridge-fc")):
        if has(deep, base):
            add(f"{deep} at or below {base}", f"{_mae(models[deep]):.2f} vs {_mae(models[base]):.2f}",
                _mae(models[deep]) <= _mae(models[base]))
    for name, m in models.items():
        if m.get("seeds", 1) > 1:
            add(f"{name}: SD over {m['seeds']} seeds at most 0.3", f"{m['mae_seed_sd']:.2f}", m["mae_seed_sd"] <= 0.3)
    r = None if a is None else a.get("gap_age_r_seed_mean", a.get("gap_age_r"))
    if r is not None:
        add("AMAge-Net r(gap, age) at least -0.3", f"{r:.2f}", r >= -0.3)
    return out


def verdict(models: dict[str, dict], floor: dict[str, float], oracle: dict[str, float] | None = None) -> dict[str, Any]:
    """Is AMAge-Net within ``FLOOR_MARGIN`` of the multimodal floor MAE and better than every other
    model (seed means)? ``notes`` say which aim is missed and where the distance to the floor comes
    from; the oracle (unreachable) is named beside the floor; ``targets`` (:func:`targets`)."""
    oracle = oracle or {}
    amae = _mae(models["amagenet"])
    others = {k: _mae(v) for k, v in models.items() if k != "amagenet"}
    best = min(others, key=others.get)
    bound = floor.get("both")
    ratio = amae / bound if bound else None
    within = ratio is not None and ratio <= 1 + FLOOR_MARGIN
    better = amae < others[best]
    notes = []
    if ratio is None:
        notes.append("no floor (not a synthetic cohort)")
    elif not within:
        notes.append(f"AMAge-Net's MAE {amae:.2f} is {ratio:.2f}x the multimodal floor {bound:.2f} "
                     f"(aim: at most {1 + FLOOR_MARGIN:.2f}x).")
        for model, modality in (("smri", "smri"), ("fmri", "fmri")):
            if model in models and floor.get(modality):
                m = _mae(models[model])
                notes.append(f"The {modality[0]}MRI branch alone reaches {m:.2f} against its own floor "
                             f"{floor[modality]:.2f} ({m / floor[modality]:.2f}x).")
        notes.append("The floor is the Bayes-optimal error given each participant's noise-free generative "
                     "parameters; a model must also see through image noise, the bias field, motion and "
                     "finite scans, from a few hundred training participants.")
    if oracle.get("both"):
        notes.append(f"The oracle (an ideal observer of the latent ages, unreachable: it ignores the "
                     f"per-person scatter of the parameters that age drives) is {oracle['both']:.2f}.")
    gap_r = models["amagenet"].get("gap_age_r")
    if gap_r is not None and gap_r < -0.5:
        notes.append(f"AMAge-Net's brain-age gap correlates with age (r = {gap_r:.2f}): its predictions are "
                     "pulled toward the mean age.")
    if not better:
        notes.append(f"AMAge-Net ({amae:.2f}) is not better than every other model: {best} reaches "
                     f"{others[best]:.2f}.")
    return {"amagenet_mae": amae, "floor_mae": bound, "ratio_to_floor": ratio,
            "oracle_mae": oracle.get("both"), "within_25pct_of_floor": within,
            "better_than_every_baseline": better,
            "best_other_model": best, "best_other_mae": others[best], "notes": notes,
            "targets": targets(models)}
