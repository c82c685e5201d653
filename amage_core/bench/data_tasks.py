"""Data-side benchmark tasks, each run in its own process by :mod:`amage_core.bench.worker`.

- :func:`synth`: cohort generation, participants per minute, after an untimed warm-up (worker
  processes started, templates loaded), so the rate is the steady state;
- :func:`prep`: one preparation (``prepare_cohort``) from a synthetic BIDS folder;
- :func:`pipeline`: the training input pipeline, T1 only: the prepared cohort through
  ``CohortDataset`` + PyG ``DataLoader`` against MONAI ``LoadImaged`` + ``Dataset`` re-reading the
  fMRIPrep T1w NIfTI files, and against MONAI ``CacheDataset`` (same transforms, cached).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from amage_core.config import PrepConfig, SynthConfig, from_dict


def synth(jobs: list[dict[str, Any]], warmup: dict[str, Any]) -> dict[str, Any]:
    """Generate each job's cohort (``cfg``: SynthConfig fields, ``out``, ``n_jobs``, ``label``).

    ``warmup`` (same fields) is generated first, untimed, then removed."""
    from amage_core.synth import generate_cohort

    t0 = time.perf_counter()
    for n_jobs in sorted({j["n_jobs"] for j in jobs}):
        out = Path(warmup["out"]) / f"n_jobs-{n_jobs}"
        generate_cohort(from_dict(SynthConfig, warmup["cfg"]), out, n_jobs=n_jobs, progress=False,
                        overwrite=True)
        shutil.rmtree(out, ignore_errors=True)
    setup = time.perf_counter() - t0
    timed = {}
    for job in jobs:
        cfg = from_dict(SynthConfig, job["cfg"])
        t0 = time.perf_counter()
        generate_cohort(cfg, Path(job["out"]), n_jobs=job["n_jobs"], progress=False, overwrite=True)
        seconds = time.perf_counter() - t0
        timed[job["label"]] = {"seconds": seconds, "n": cfg.n_subjects, "n_jobs": job["n_jobs"],
                               "per_minute": 60 * cfg.n_subjects / seconds}
    return {"setup_seconds": setup, "jobs": timed}


def prep(root: str, out: str, prep: dict[str, Any]) -> dict[str, Any]:
    """Prepare the BIDS folder ``root`` into ``out`` (replaced) with PrepConfig fields ``prep``."""
    from amage_core.data.prepare import prepare_cohort

    cfg = from_dict(PrepConfig, prep)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    cohort = prepare_cohort("bids", root, out, cfg, progress=False)
    seconds = time.perf_counter() - t0
    n_seen = int(len(cohort.qc)) if cohort.qc is not None else cohort.n
    return {"seconds": seconds, "n_included": int(cohort.n), "n_seen": n_seen,
            "per_minute": 60 * n_seen / seconds, "fmri_input": cfg.fmri_input, "n_jobs": cfg.n_jobs}


def _rate(loader, epochs: int) -> tuple[float, list[float]]:
    """Samples per second over ``epochs`` full passes (every batch touched), and each pass's seconds."""
    seconds, n = [], 0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for batch in loader:
            t1 = batch["t1"] if isinstance(batch, dict) else batch.t1
            n += int(t1.shape[0])
            float(t1.sum())                     # touch the data, as a training step would
        seconds.append(time.perf_counter() - t0)
    return n / sum(seconds), seconds


def pipeline(cohort: str, synth_root: str, epochs: int, batch_size: int) -> dict[str, Any]:
    """Samples/s of three T1 input pipelines over the same participants (see the module docstring).

    The MONAI pipelines load each ``*_desc-preproc_T1w.nii.gz``, put the channel first, scale
    intensities by robust percentiles and resize to the prepared grid: the work the prepared cohort
    did once. ``CacheDataset``'s first pass fills the cache; its rate is that of the later passes.
    """
    from monai.data import CacheDataset, DataLoader as MonaiLoader, Dataset
    from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, Resized,
                                  ScaleIntensityRangePercentilesd)
    from torch_geometric.loader import DataLoader

    from amage_core.config import GraphConfig
    from amage_core.data.cohort import load_cohort
    from amage_core.train.dataset import CohortDataset
    from amage_core.train.scaler import AgeScaler

    data = load_cohort(cohort)
    ids = data.participants["participant_id"].astype(str).tolist()
    scaler = AgeScaler.fit(data.participants["age"].to_numpy(dtype=float), ids)
    prepared = CohortDataset(data, np.arange(data.n), GraphConfig(), scaler, frozenset({"smri"}))
    prepared_rate, prepared_s = _rate(DataLoader(prepared, batch_size=batch_size, shuffle=False), epochs)

    anat = Path(synth_root) / "derivatives" / "fmriprep"
    files = [{"t1": str(anat / pid / "anat" / f"{pid}_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz")}
             for pid in ids]
    missing = [f["t1"] for f in files if not Path(f["t1"]).is_file()]
    if missing:
        raise FileNotFoundError(f"T1w files missing for the MONAI pipeline, e.g. {missing[0]}")
    shape = tuple(int(s) for s in data.t1.shape[1:])
    transforms = Compose([
        LoadImaged(keys="t1", image_only=True), EnsureChannelFirstd(keys="t1"),
        ScaleIntensityRangePercentilesd(keys="t1", lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True),
        Resized(keys="t1", spatial_size=shape),
    ])
    plain_rate, plain_s = _rate(MonaiLoader(Dataset(files, transforms), batch_size=batch_size), epochs)
    t0 = time.perf_counter()
    cache = CacheDataset(files, transforms, progress=False, num_workers=0)
    fill = time.perf_counter() - t0
    cache_rate, cache_s = _rate(MonaiLoader(cache, batch_size=batch_size), epochs)
    return {"n": len(files), "epochs": epochs, "batch_size": batch_size, "grid": list(shape),
            "prepared": {"samples_per_s": prepared_rate, "epoch_seconds": prepared_s},
            "monai_dataset": {"samples_per_s": plain_rate, "epoch_seconds": plain_s},
            "monai_cache": {"samples_per_s": cache_rate, "epoch_seconds": cache_s, "fill_seconds": fill}}
