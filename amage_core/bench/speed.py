"""Speed, memory and scaling: scratch cohorts at 1x, 2x and 4x participants, each task measured in a
fresh process (:func:`amage_core.bench.measure.measured`); and the GPU training step.

Every throughput is ``{value, unit, baseline, baseline_value, ratio}`` (:func:`entry`): ``baseline``
names the alternative measured in the same run and ``ratio`` is value / baseline_value (higher is
better for the value). Scratch cohorts live under ``scratch`` and are removed by the caller.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from amage_core.bench.measure import Measured, measured
from amage_core.bench.settings import BenchSettings, StepSize
from amage_core.config import Profile, load_profile, replace, to_dict

logger = logging.getLogger(__name__)
SCALES = (1, 2, 4)
LINEAR_SLACK = 0.25     # 4x participants may cost up to 4 * 1.25 the time; memory up to 1.25x


def entry(value: float, unit: str, baseline: str, baseline_value: float, **extra: Any) -> dict[str, Any]:
    """One throughput figure against a named alternative."""
    ratio = value / baseline_value if baseline_value else None
    return {"value": round(value, 3), "unit": unit, "baseline": baseline, "baseline_value": round(baseline_value, 3),
            "ratio": None if ratio is None else round(ratio, 3), **extra}


def step_model(step: StepSize, variant: str = "amagenet", **changes: Any) -> dict[str, Any]:
    """ModelConfig fields of a training-step measurement: the named profile's model, overridden."""
    model = replace(load_profile(step.profile).model, **step.model)
    return to_dict(replace(model, variant=variant, **changes))


def step_baseline(step: StepSize) -> tuple[str, str, dict[str, Any]]:
    """(name, description, ModelConfig fields) of the alternative a training step is compared with."""
    if step.profile == "paper":
        return (f"{step.name}_no_checkpointing", "same without activation checkpointing",
                step_model(step, densenet={"checkpointing": False}))
    return f"{step.name}_smri", "sMRI-only DenseNet (smri variant), same sizes", step_model(step, "smri")


def scales(s: BenchSettings) -> dict[str, int]:
    return {f"{k}x": s.scale_base * k for k in SCALES}


def _measure(profile: Profile, s: BenchSettings, scratch: Path, prep_cfg) -> dict[str, Measured]:
    """Every measurement of the section, each in a fresh process, by name."""
    sizes, synth_dir, prep_dir = scales(s), scratch / "synth", scratch / "prepared"

    def job(label: str, n: int, n_jobs: int, n_bold: int = 0) -> dict[str, Any]:
        cfg = to_dict(replace(profile.cohorts["camcan"].synth, n_subjects=n, n_bold_nifti=n_bold))
        return {"label": label, "cfg": cfg, "out": str(synth_dir / label), "n_jobs": n_jobs}

    def prep(label: str, source: str, fmri_input: str) -> Measured:
        return measured("prep", {"root": str(synth_dir / source), "out": str(prep_dir / label),
                                 "prep": to_dict(replace(prep_cfg, fmri_input=fmri_input))})

    def train_step(step: StepSize, model: dict[str, Any]) -> Measured:
        return measured("step", {"step": to_dict(step), "model": model, "seed": s.seed})

    jobs = [job(k, n, prep_cfg.n_jobs) for k, n in sizes.items()]
    jobs += [job("1x-serial", s.scale_base, 1), job("bold", s.n_bold, prep_cfg.n_jobs, s.n_bold)]
    logger.info(f"bench speed: generating scratch cohorts {sizes} (+ {s.n_bold} with BOLD)")
    m = {"synth": measured("synth", {"jobs": jobs, "warmup": job("warmup", 2, 1)})}
    shutil.rmtree(synth_dir / "1x-serial", ignore_errors=True)
    for k in sizes:
        logger.info(f"bench speed: preparing {k} ({sizes[k]} participants)")
        m[f"prep_{k}"] = prep(k, k, "auto")
    for path in ("xcpd", "bold"):
        logger.info(f"bench speed: preparing the BOLD cohort from {path}")
        m[f"prep_bold-{path}"] = prep(f"bold-{path}", "bold", path)
    logger.info(f"bench speed: one training epoch on each of {list(sizes)}")
    m["epochs"] = measured("epochs", {"cohorts": {k: str(prep_dir / k) for k in sizes}, "model": to_dict(profile.model),
                                      "graph": to_dict(profile.graph), "batch_size": s.epoch_batch, "seed": s.seed})
    logger.info("bench speed: input pipelines (prepared cohort vs MONAI)")
    m["pipeline"] = measured("pipeline", {"cohort": str(prep_dir / "1x"), "synth_root": str(synth_dir / "1x"),
                                          "epochs": s.pipeline_epochs, "batch_size": s.pipeline_batch})
    for step in s.steps:
        logger.info(f"bench speed: training steps, {step.name} sizes")
        m[f"step_{step.name}"] = train_step(step, step_model(step))
        name, _, model = step_baseline(step)
        m[f"step_{name}"] = train_step(step, model)
    return m


def _throughput(m: dict[str, Measured], s: BenchSettings, n_jobs: int) -> dict[str, Any]:
    g, sizes = m["synth"].result["jobs"], scales(s)
    nifti, tsv, pr = m["prep_bold-bold"].result, m["prep_bold-xcpd"].result, m["pipeline"].result
    per_min = "participants/min"
    thr = {
        "synth": entry(g["1x"]["per_minute"], per_min, "one process (n_jobs=1)", g["1x-serial"]["per_minute"],
                       n=sizes["1x"], n_jobs=n_jobs, setup_seconds=round(m["synth"].result["setup_seconds"], 1)),
        "prep_tsv": entry(m["prep_4x"].result["per_minute"], per_min, "NIfTI masker path (fmri_input=bold)",
                          nifti["per_minute"], n=sizes["4x"], n_jobs=n_jobs),
        "prep_nifti": entry(nifti["per_minute"], per_min, "XCP-D TSV path, same participants", tsv["per_minute"],
                            n=s.n_bold, n_jobs=n_jobs),
        "input_pipeline": entry(pr["prepared"]["samples_per_s"], "samples/s", "MONAI LoadImaged + Dataset (re-reading NIfTI)",
                                pr["monai_dataset"]["samples_per_s"], aim_ratio=10, n=pr["n"], grid=pr["grid"],
                                batch_size=pr["batch_size"]),
        "input_pipeline_vs_cache": entry(pr["prepared"]["samples_per_s"], "samples/s", "MONAI CacheDataset (after its cache fill)",
                                         pr["monai_cache"]["samples_per_s"],
                                         cache_fill_seconds=round(pr["monai_cache"]["fill_seconds"], 2)),
    }
    for step in s.steps:
        r = m[f"step_{step.name}"].result
        name, label, _ = step_baseline(step)
        thr[f"train_step_{step.name}"] = entry(
            r["samples_per_s"], "samples/s", label, m[f"step_{name}"].result["samples_per_s"], grid=list(step.t1_shape),
            n_roi=step.n_roi, batch_size=step.batch_size, parameters=r["parameters"], device="cpu", note=step.note)
    return thr


def _memory(m: dict[str, Measured], s: BenchSettings) -> dict[str, float]:
    return {"synth_peak_mb": m["synth"].peak_mb, "prep_nifti_peak_mb": m["prep_bold-bold"].peak_mb,
            "prep_tsv_same_participants_peak_mb": m["prep_bold-xcpd"].peak_mb,
            **{f"prep_{k}_peak_mb": m[f"prep_{k}"].peak_mb for k in scales(s)},
            "epochs_peak_mb": m["epochs"].peak_mb, "pipeline_peak_mb": m["pipeline"].peak_mb,
            **{f"train_{k}_peak_mb": v.peak_mb for k, v in m.items() if k.startswith("step_")}}


def _scaling(m: dict[str, Measured], s: BenchSettings) -> dict[str, Any]:
    sizes, g, ep = scales(s), m["synth"].result["jobs"], m["epochs"].result
    t = [m[f"prep_{k}"].result["seconds"] for k in sizes]
    mb = [m[f"prep_{k}"].peak_mb for k in sizes]
    e = [ep[k]["epoch_seconds"] for k in sizes]
    return {
        "participants": list(sizes.values()), "generation_seconds": [round(g[k]["seconds"], 2) for k in sizes],
        "prep_seconds": [round(x, 2) for x in t], "prep_peak_mb": mb, "epoch_seconds": [round(x, 2) for x in e],
        "epoch_dataset_seconds": [round(ep[k]["dataset_seconds"], 2) for k in sizes],
        "prep_time_ratio_4x_over_1x": round(t[-1] / t[0], 2), "prep_memory_ratio_4x_over_1x": round(mb[-1] / mb[0], 2),
        "epoch_time_ratio_4x_over_1x": round(e[-1] / e[0], 2),
        "prep_at_most_linear": t[-1] / t[0] <= 4 * (1 + LINEAR_SLACK), "prep_memory_flat": mb[-1] / mb[0] <= 1 + LINEAR_SLACK,
    }


def speed(profile: Profile, s: BenchSettings, scratch: Path) -> dict[str, Any]:
    """``throughput``, ``memory`` and ``scaling`` sections, notes, and each process's wall/CPU time."""
    prep_cfg = profile.cohorts["camcan"].prep_config(profile.prep)
    if s.prep_n_jobs is not None:
        prep_cfg = replace(prep_cfg, n_jobs=s.prep_n_jobs)
    m = _measure(profile, s, scratch, prep_cfg)
    scaling = _scaling(m, s)
    notes = [f"Scratch cohorts: camcan-like at {profile.cohorts['camcan'].synth.voxel_size:g} mm, {scales(s)} "
             f"participants, prepared with n_jobs={prep_cfg.n_jobs}; the NIfTI path uses {s.n_bold} participants who "
             "all have voxelwise BOLD."]
    if not scaling["prep_memory_flat"]:
        notes.append(f"Preparation's peak memory grew by more than {LINEAR_SLACK:.0%} from 1x to 4x participants.")
    processes = {k: {"wall_seconds": round(v.wall_seconds, 1), "cpu_seconds": round(v.cpu_seconds, 1)} for k, v in m.items()}
    return {"throughput": _throughput(m, s, prep_cfg.n_jobs), "memory": _memory(m, s), "scaling": scaling,
            "notes": notes, "processes": processes, "details": {k: v.result for k, v in m.items()}}


def gpu(s: BenchSettings, device: str) -> dict[str, Any]:
    """``gpu`` section: the paper profile's training step on CUDA, fp32 and bf16 autocast."""
    import torch

    if device != "cuda":
        return {"available": torch.cuda.is_available(), "note": "not requested (use --device cuda)"}
    if not torch.cuda.is_available():
        return {"available": False, "note": "--device cuda but torch.cuda.is_available() is False: skipped"}
    step = s.cuda_step
    r = measured("cuda_step", {"step": to_dict(step), "model": step_model(step), "seed": s.seed})
    res, paper = r.result, load_profile("paper")
    n, folds, val = paper.cohorts["camcan"].synth.n_subjects, paper.train.folds, paper.train.val_fraction
    n_train = round(n * (folds - 1) / folds * (1 - val))
    out = {"available": True, "device": res["device"], "step": to_dict(step), "fp32": res.get("fp32"),
           "bf16": res.get("bf16"), "host_peak_mb": r.peak_mb}
    fp32, bf16 = res.get("fp32", {}), res.get("bf16", {})
    if "samples_per_s" in fp32 and "samples_per_s" in bf16:
        out["bf16_speedup"] = round(bf16["samples_per_s"] / fp32["samples_per_s"], 2)
    if "samples_per_s" in bf16:
        out["paper_epoch_seconds"] = round(n_train / bf16["samples_per_s"], 1)
        out["paper_epoch_note"] = (f"{n_train} training participants (n={n}, {folds}-fold, {val:g} validation) "
                                   "/ bf16 samples/s; data loading excluded")
        out["fits_16gb"] = bf16["peak_gpu_mb"] < 16 * 1024
    return out
