"""Speed, memory and scaling: scratch cohorts at 1x, 2x and 4x participants, each task measured in a
fresh process (:func:`amage_core.bench.measure.measured`).

Every throughput is ``{value, unit, baseline, baseline_value, ratio}``: ``baseline`` names the
alternative measured in the same run and ``ratio`` is value / baseline_value (higher is better for
the value). Scratch cohorts live under ``scratch`` and are removed by the caller.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from amage_core.bench.measure import measured
from amage_core.bench.settings import BenchSettings, StepSize
from amage_core.config import Profile, load_profile, replace, to_dict

SCALES = (1, 2, 4)


def entry(value: float, unit: str, baseline: str, baseline_value: float, **extra: Any) -> dict[str, Any]:
    """One throughput figure against a named alternative."""
    ratio = value / baseline_value if baseline_value else None
    return {"value": round(value, 3), "unit": unit, "baseline": baseline,
            "baseline_value": round(baseline_value, 3), "ratio": None if ratio is None else round(ratio, 3),
            **extra}


def step_model(step: StepSize, variant: str = "amagenet", **changes: Any) -> dict[str, Any]:
    """ModelConfig fields of a training-step measurement: the named profile's model, overridden."""
    model = replace(load_profile(step.profile).model, **step.model)
    return to_dict(replace(model, variant=variant, **changes))


def step_args(step: StepSize, model: dict[str, Any], seed: int) -> dict[str, Any]:
    return {"step": to_dict(step), "model": model, "seed": seed}


def speed(profile: Profile, s: BenchSettings, scratch: Path, log=print) -> dict[str, Any]:
    """``throughput``, ``memory`` and ``scaling`` sections and their notes."""
    synth_cfg = profile.cohorts["camcan"].synth
    prep_cfg = profile.cohorts["camcan"].prep_config(profile.prep)
    if s.prep_n_jobs is not None:
        prep_cfg = replace(prep_cfg, n_jobs=s.prep_n_jobs)
    n_jobs = prep_cfg.n_jobs
    sizes = {f"{k}x": s.scale_base * k for k in SCALES}
    synth_dir, prep_dir = scratch / "synth", scratch / "prepared"

    def cohort(n: int, n_bold: int = 0) -> dict[str, Any]:
        return to_dict(replace(synth_cfg, n_subjects=n, n_bold_nifti=n_bold))

    jobs = [{"label": k, "cfg": cohort(n), "out": str(synth_dir / k), "n_jobs": n_jobs} for k, n in sizes.items()]
    jobs.insert(1, {"label": "1x-serial", "cfg": cohort(s.scale_base), "out": str(synth_dir / "1x-serial"), "n_jobs": 1})
    jobs.append({"label": "bold", "cfg": cohort(s.n_bold, s.n_bold), "out": str(synth_dir / "bold"), "n_jobs": n_jobs})
    log(f"bench speed: generating scratch cohorts {sizes} (+ {s.n_bold} with BOLD)")
    gen = measured("synth", {"jobs": jobs, "warmup": {"cfg": cohort(2), "out": str(synth_dir / "warmup")}})
    shutil.rmtree(synth_dir / "1x-serial", ignore_errors=True)
    g = gen.result["jobs"]

    prep = {}
    for k in sizes:
        log(f"bench speed: preparing {k} ({sizes[k]} participants)")
        prep[k] = measured("prep", {"root": str(synth_dir / k), "out": str(prep_dir / k),
                                    "prep": to_dict(replace(prep_cfg, fmri_input="auto"))})
    for path in ("xcpd", "bold"):
        log(f"bench speed: preparing the BOLD cohort from {path}")
        prep[f"bold-{path}"] = measured("prep", {"root": str(synth_dir / "bold"), "out": str(prep_dir / f"bold-{path}"),
                                                 "prep": to_dict(replace(prep_cfg, fmri_input=path))})
    log(f"bench speed: one training epoch on each of {list(sizes)}")
    ep = measured("epochs", {"cohorts": {k: str(prep_dir / k) for k in sizes}, "model": to_dict(profile.model),
                             "graph": to_dict(profile.graph), "batch_size": s.epoch_batch, "seed": s.seed})
    epochs = ep.result
    log("bench speed: input pipelines (prepared cohort vs MONAI)")
    pipe = measured("pipeline", {"cohort": str(prep_dir / "1x"), "synth_root": str(synth_dir / "1x"),
                                 "epochs": s.pipeline_epochs, "batch_size": s.pipeline_batch})
    steps = {}
    for step in s.steps:
        log(f"bench speed: training steps, {step.name} sizes")
        steps[step.name] = measured("step", step_args(step, step_model(step), s.seed))
        if step.name == "demo":
            steps["demo_smri"] = measured("step", step_args(step, step_model(step, "smri"), s.seed))
        if step.profile == "paper":
            base = step_model(step, densenet={"checkpointing": False})
            steps[f"{step.name}_no_checkpointing"] = measured("step", step_args(step, base, s.seed))

    p, bold_n, bold_t = prep, prep["bold-bold"].result, prep["bold-xcpd"].result
    pr = pipe.result
    thr = {
        "synth": entry(g["1x"]["per_minute"], "participants/min", "one process (n_jobs=1)",
                       g["1x-serial"]["per_minute"], n=sizes["1x"], n_jobs=n_jobs,
                       setup_seconds=round(gen.result["setup_seconds"], 1)),
        "prep_tsv": entry(p["4x"].result["per_minute"], "participants/min",
                          "NIfTI masker path (fmri_input=bold)", bold_n["per_minute"], n=sizes["4x"], n_jobs=n_jobs),
        "prep_nifti": entry(bold_n["per_minute"], "participants/min", "XCP-D TSV path, same participants",
                            bold_t["per_minute"], n=s.n_bold, n_jobs=n_jobs),
        "input_pipeline": entry(pr["prepared"]["samples_per_s"], "samples/s",
                                "MONAI LoadImaged + Dataset (re-reading NIfTI)", pr["monai_dataset"]["samples_per_s"],
                                aim_ratio=10, n=pr["n"], grid=pr["grid"], batch_size=pr["batch_size"]),
        "input_pipeline_vs_cache": entry(pr["prepared"]["samples_per_s"], "samples/s",
                                         "MONAI CacheDataset (after its cache fill)", pr["monai_cache"]["samples_per_s"],
                                         cache_fill_seconds=round(pr["monai_cache"]["fill_seconds"], 2)),
    }
    for step in s.steps:
        r = steps[step.name].result
        base_name, label = ((f"{step.name}_no_checkpointing", "same without activation checkpointing")
                            if step.profile == "paper" else ("demo_smri", "sMRI-only DenseNet (smri variant), same sizes"))
        thr[f"train_step_{step.name}"] = entry(
            r["samples_per_s"], "samples/s", label, steps[base_name].result["samples_per_s"],
            grid=list(step.t1_shape), n_roi=step.n_roi, batch_size=step.batch_size,
            parameters=r["parameters"], device="cpu", note=step.note)

    mem = {"synth_peak_mb": gen.peak_mb, "prep_nifti_peak_mb": p["bold-bold"].peak_mb,
           "prep_tsv_same_participants_peak_mb": p["bold-xcpd"].peak_mb, "pipeline_peak_mb": pipe.peak_mb}
    mem.update({f"prep_{k}_peak_mb": p[k].peak_mb for k in sizes})
    mem["epochs_peak_mb"] = ep.peak_mb
    mem.update({f"train_step_{name}_peak_mb": m.peak_mb for name, m in steps.items()})

    t = [p[k].result["seconds"] for k in sizes]
    m = [p[k].peak_mb for k in sizes]
    scaling = {
        "participants": list(sizes.values()),
        "generation_seconds": [round(g[k]["seconds"], 2) for k in sizes],
        "prep_seconds": [round(x, 2) for x in t], "prep_peak_mb": m,
        "epoch_seconds": [round(epochs[k]["epoch_seconds"], 2) for k in sizes],
        "epoch_dataset_seconds": [round(epochs[k]["dataset_seconds"], 2) for k in sizes],
        "prep_time_ratio_4x_over_1x": round(t[-1] / t[0], 2),
        "prep_memory_ratio_4x_over_1x": round(m[-1] / m[0], 2),
        "epoch_time_ratio_4x_over_1x": round(epochs["4x"]["epoch_seconds"] / epochs["1x"]["epoch_seconds"], 2),
    }
    scaling["prep_at_most_linear"] = scaling["prep_time_ratio_4x_over_1x"] <= 4 * 1.25
    scaling["prep_memory_flat"] = scaling["prep_memory_ratio_4x_over_1x"] <= 1.25
    notes = [f"Scratch cohorts: camcan-like at {synth_cfg.voxel_size:g} mm, {sizes} participants, prepared with "
             f"n_jobs={n_jobs}; the NIfTI path uses {s.n_bold} participants who all have voxelwise BOLD."]
    if not scaling["prep_memory_flat"]:
        notes.append("Preparation's peak memory grew by more than 25% from 1x to 4x participants.")
    tasks = {"synth": gen, "pipeline": pipe, "epochs": ep, **{f"prep_{k}": v for k, v in p.items()},
             **{f"step_{k}": v for k, v in steps.items()}}
    processes = {k: {"wall_seconds": round(m.wall_seconds, 1), "cpu_seconds": round(m.cpu_seconds, 1)}
                 for k, m in tasks.items()}
    return {"throughput": thr, "memory": mem, "scaling": scaling, "notes": notes, "processes": processes,
            "details": {"synth": gen.result, "prep": {k: v.result for k, v in p.items()},
                        "epochs": epochs, "pipeline": pr,
                        "steps": {k: v.result for k, v in steps.items()}}}


def gpu(s: BenchSettings, device: str) -> dict[str, Any]:
    """``gpu`` section: the paper profile's training step on CUDA, fp32 and bf16 autocast."""
    import torch

    if device != "cuda":
        return {"available": torch.cuda.is_available(), "note": "not requested (use --device cuda)"}
    if not torch.cuda.is_available():
        return {"available": False, "note": "--device cuda but torch.cuda.is_available() is False: skipped"}
    step = s.cuda_step
    r = measured("cuda_step", step_args(step, step_model(step), s.seed))
    res = r.result
    paper = load_profile("paper")
    n = paper.cohorts["camcan"].synth.n_subjects
    n_train = round(n * (paper.train.folds - 1) / paper.train.folds * (1 - paper.train.val_fraction))
    out = {"available": True, "device": res["device"], "step": to_dict(step), "fp32": res.get("fp32"),
           "bf16": res.get("bf16"), "host_peak_mb": r.peak_mb}
    fp32, bf16 = res.get("fp32", {}), res.get("bf16", {})
    if "samples_per_s" in fp32 and "samples_per_s" in bf16:
        out["bf16_speedup"] = round(bf16["samples_per_s"] / fp32["samples_per_s"], 2)
    if "samples_per_s" in bf16:
        out["paper_epoch_seconds"] = round(n_train / bf16["samples_per_s"], 1)
        out["paper_epoch_note"] = (f"{n_train} training participants (n={n}, {paper.train.folds}-fold, "
                                   f"{paper.train.val_fraction:g} validation) / bf16 samples/s; data loading excluded")
        out["fits_16gb"] = bf16["peak_gpu_mb"] < 16 * 1024
    return out
