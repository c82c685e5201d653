"""Accuracy: every model on the same camcan-like cohort and folds, against the cohort's reachable floor.

Models run through :func:`amage_core.workflow.seed_runs` with the benchmark profile
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

from amage_core.bench.settings import FLOOR_MARGIN, FUSION_AIM, BenchSettings
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
    the seed ensemble, and ``mae_seeds`` (one per seed), their mean and SD (None for one seed), the
    mean r(gap, age) over seeds. ``seconds``: this call's wall time, None when finished runs were
    reused; then ``computed_seconds`` is the time an earlier benchmark (``earlier``: run path ->
    seconds) measured for them. ``epoch_seconds``: the training epochs' time the runs recorded."""
    from amage_core.evaluate.metrics import regression_metrics

    df, spread = run.predictions, run.spread()
    pooled = regression_metrics(df["age"].to_numpy(float), df["predicted_age"].to_numpy(float))
    epochs = [_epoch_seconds(r.path) for r in run.runs]
    measured = None if run.reused else round(seconds, 1)
    return {"mae": pooled["mae"], "rmse": pooled["rmse"], "r2": pooled["r2"], "r": pooled["pearson_r"],
            "gap_age_r": pooled["gap_age_r"], "gap_age_spearman": pooled["gap_age_spearman"], "n": pooled["n"],
            "seeds": len(run.runs), "mae_seeds": run.per_seed()["mae"].astype(float).tolist(),
            "mae_seed_mean": spread["mae"]["mean"], "mae_seed_sd": spread["mae"]["sd"],
            "gap_age_r_seed_mean": spread["gap_age_r"]["mean"], "seconds": measured, "reused": bool(run.reused),
            "computed_seconds": measured if measured is not None else earlier.get(str(run.path)),
            "epoch_seconds": round(sum(epochs), 1) if all(e is not None for e in epochs) else None,
            "run": str(run.path)}


def _earlier_seconds(previous: dict[str, Any] | None) -> dict[str, float]:
    """Run path -> seconds it took to compute, from an earlier benchmark's results (if any)."""
    acc = (previous or {}).get("accuracy", {})
    models = [*acc.get("models", {}).values(), *acc.get("transfer", {}).get("models", {}).values()]
    return {m["run"]: m.get("computed_seconds") or m.get("seconds") for m in models
            if m.get("run") and (m.get("computed_seconds") or m.get("seconds"))}


def _against_floor(models: dict[str, dict], floor: dict[str, float]) -> None:
    """Add each model's floor (of the modalities it sees) and its MAE / floor, in place."""
    from amage_core.report import MODEL_MODALITY

    for name, m in models.items():
        modality = MODEL_MODALITY.get(name, "both")
        m.update(modalities=modality, floor_mae=floor.get(modality),
                 ratio_to_floor=m["mae"] / floor[modality] if floor.get(modality) else None)


def setup(profile: Profile) -> dict[str, Any]:
    """What the accuracy figures were measured on: cohorts, grid, model sizes, training schedule."""
    t, m = profile.train, to_dict(profile.model)
    synth = {name: profile.cohorts[name].synth for name in ("camcan", "oasis3")}
    cohorts = {name: {"preset": c.preset, "n_subjects": c.n_subjects, "voxel_size_mm": c.voxel_size, "seed": c.seed}
               for name, c in synth.items()}
    return {"profile": profile.name, "cohorts": cohorts, "atlas": profile.prep.atlas,
            "baseline_blas_threads": BLAS_THREADS_FOR_BASELINES,
            "t1_shape": list(profile.prep.t1_shape), "graph": to_dict(profile.graph),
            "model": {k: m[k] for k in ("gat", "densenet", "sfcn", "fusion", "head_hidden")},
            "train": {k: getattr(t, k) for k in ("epochs", "batch_size", "lr", "weight_decay",
                                                   "folds", "val_fraction", "protocol", "seed", "seeds")}}


def accuracy(profile: Profile, s: BenchSettings, device: str, progress: bool = True,
             previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """``accuracy`` section of the benchmark (see the module docstring); ``previous``: an earlier
    benchmark's results, for the computing time of runs reused now."""
    from threadpoolctl import threadpool_limits

    from amage_core import workflow as wf
    from amage_core.baselines import BASELINES
    from amage_core.report import bounds

    earlier = _earlier_seconds(previous)
    t0 = time.perf_counter()
    camcan, oasis3 = wf.prepared(profile, "camcan", progress), wf.prepared(profile, "oasis3", progress)
    data_seconds = time.perf_counter() - t0

    def run(model: str, **test) -> dict[str, Any]:
        t0 = time.perf_counter()
        with (threadpool_limits(limits=BLAS_THREADS_FOR_BASELINES, user_api="blas") if model in BASELINES
              else contextlib.nullcontext()):
            seeds = wf.seed_runs(profile, "camcan", model, train={"device": device}, progress=progress, **test)
        return _metrics(seeds, time.perf_counter() - t0, earlier)

    models, transfer = {}, {}
    for model in s.models:
        logger.info(f"bench accuracy: {model} on camcan-like (n={camcan.n})")
        models[model] = run(model)
    for model in s.transfer_models:
        logger.info(f"bench accuracy: {model} camcan-like -> oasis3-like")
        transfer[model] = run(model, test_cohort="oasis3")
    b, bt = bounds(profile, "camcan"), bounds(profile, "oasis3")
    floor, oracle, floor_t, oracle_t = b.get("floor", {}), b.get("oracle", {}), bt.get("floor", {}), bt.get("oracle", {})
    _against_floor(models, floor)
    _against_floor(transfer, floor_t)
    return {"setup": setup(profile), "n_included": {"camcan": int(camcan.n), "oasis3": int(oasis3.n)},
            "data_seconds": round(data_seconds, 1), "models": models,
            "floor_mae": floor.get("both"), "floor_mae_by_modality": floor,
            "oracle_mae": oracle.get("both"), "oracle_mae_by_modality": oracle,
            "transfer": {"train": "camcan", "test": "oasis3", "models": transfer,
                         "floor_mae": floor_t.get("both"), "floor_mae_by_modality": floor_t,
                         "oracle_mae": oracle_t.get("both"), "oracle_mae_by_modality": oracle_t},
            "verdict": verdict(models, floor, oracle),
            "computing_seconds": round(sum(m["computed_seconds"] or 0 for m in (*models.values(), *transfer.values())), 1)}


def _mae(m: dict[str, Any]) -> float:
    """A model's MAE for verdicts: the mean over its seeds (a baseline's one run)."""
    return m.get("mae_seed_mean", m["mae"])


def targets(models: dict[str, dict], floor: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The aims of the training work (issue 15), each ``{"target", "value", "met"}``, for the models
    that were run: AMAge-Net below stacking and at least 5% below each single-branch model, DenseNet
    at or below PCA+GPR, GAT at or below ridge on FC (seed means), every deep model's SD over seeds
    at most 0.3 years, AMAge-Net's r(gap, age) at least -0.3.

    With the reachable floors (``floor``: {"both"|"smri"|"fmri": MAE}), an aim of AMAge-Net against
    a branch also gives ``"at_floor"``: the same comparison between the floors, i.e. how much a
    Bayes-optimal observer gains from the second modality on this cohort."""
    floor = floor or {}
    out = []

    def compare(target: str, a: str, b: str, factor: float = 1.0, strict: bool = False) -> dict | None:
        if a not in models or b not in models:
            return None
        x, y = _mae(models[a]), _mae(models[b])
        value = f"{x:.2f} vs {y:.2f}" + (f" ({x / y - 1:+.1%})" if factor != 1 else "")
        out.append({"target": target, "value": value, "met": x < y if strict else x <= factor * y})
        return out[-1]

    compare("AMAge-Net below stacking", "amagenet", "stacking", strict=True)
    for branch in ("smri", "fmri"):
        row = compare(f"AMAge-Net at least 5% below {branch}", "amagenet", branch, factor=FUSION_AIM)
        if row is not None and floor.get("both") and floor.get(branch):
            row["at_floor"] = f"{floor['both']:.2f} vs {floor[branch]:.2f} ({floor['both'] / floor[branch] - 1:+.1%})"
    for deep, base in (("smri", "brainage-gpr"), ("fmri", "ridge-fc")):
        compare(f"{deep} at or below {base}", deep, base)
    for name, m in models.items():
        if m.get("seeds", 1) > 1:
            out.append({"target": f"{name}: SD over {m['seeds']} seeds at most 0.3", "value": f"{m['mae_seed_sd']:.2f}",
                        "met": m["mae_seed_sd"] <= 0.3})
    a = models.get("amagenet")
    r = None if a is None else a.get("gap_age_r_seed_mean", a.get("gap_age_r"))
    if r is not None:
        out.append({"target": "AMAge-Net r(gap, age) at least -0.3", "value": f"{r:.2f}", "met": r >= -0.3})
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
    notes = []
    if ratio is None:
        notes.append("no floor (not a synthetic cohort)")
    elif not within:
        notes.append(f"AMAge-Net's MAE {amae:.2f} is {ratio:.2f}x the multimodal floor {bound:.2f} "
                     f"(aim: at most {1 + FLOOR_MARGIN:.2f}x).")
        notes += [f"The {modality[0]}MRI branch alone reaches {_mae(models[modality]):.2f} against its own floor "
                  f"{floor[modality]:.2f} ({_mae(models[modality]) / floor[modality]:.2f}x)."
                  for modality in ("smri", "fmri") if modality in models and floor.get(modality)]
        notes.append("The floor is the Bayes-optimal error given each participant's noise-free generative "
                     "parameters; a model must also see through image noise, the bias field, motion and "
                     "finite scans, from a few hundred training participants.")
    for modality in ("smri", "fmri"):
        if bound and floor.get(modality) and bound > FUSION_AIM * floor[modality]:
            notes.append(f"At the reachable floor, both modalities together are {1 - bound / floor[modality]:.1%} "
                         f"below the {modality[0]}MRI floor ({bound:.2f} vs {floor[modality]:.2f}): the aim of "
                         f"{1 - FUSION_AIM:.0%} below the {modality[0]}MRI branch asks more than a Bayes-optimal "
                         "observer gains from the other modality on this cohort.")
    if oracle.get("both"):
        notes.append(f"The oracle (an ideal observer of the latent ages, unreachable: it ignores the "
                     f"per-person scatter of the parameters that age drives) is {oracle['both']:.2f}.")
    gap_r = models["amagenet"].get("gap_age_r")
    if gap_r is not None and gap_r < -0.5:
        notes.append(f"AMAge-Net's brain-age gap correlates with age (r = {gap_r:.2f}): its predictions are "
                     "pulled toward the mean age.")
    if amae >= others[best]:
        notes.append(f"AMAge-Net ({amae:.2f}) is not better than every other model: {best} reaches {others[best]:.2f}.")
    return {"amagenet_mae": amae, "floor_mae": bound, "ratio_to_floor": ratio, "oracle_mae": oracle.get("both"),
            "within_25pct_of_floor": within, "better_than_every_baseline": amae < others[best],
            "best_other_model": best, "best_other_mae": others[best], "notes": notes, "targets": targets(models, floor)}
