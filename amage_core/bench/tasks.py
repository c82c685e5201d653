"""What the measured processes run (:func:`amage_core.bench.measure.measured`), by name in :data:`TASKS`:
cohort generation (``synth``), preparation (``prep``), the T1 input pipeline against MONAI's
(``pipeline``), one training epoch per cohort (``epochs``) and training steps on the CPU (``step``)
and the GPU (``cuda_step``). Each returns its figures as a dict that JSON can hold."""
from __future__ import annotations

import contextlib
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from amage_core.config import GraphConfig, ModelConfig, PrepConfig, SynthConfig, from_dict


def synth(jobs: list[dict[str, Any]], warmup: dict[str, Any]) -> dict[str, Any]:
    """Participants per minute generating each job's cohort (``cfg``: SynthConfig fields, ``out``,
    ``n_jobs``, ``label``). ``warmup`` (same fields) is generated first, untimed, once per ``n_jobs``
    (worker processes started, templates loaded), then removed: the rates are the steady state."""
    from amage_core.synth import generate_cohort

    t0 = time.perf_counter()
    for n_jobs in sorted({j["n_jobs"] for j in jobs}):
        out = Path(warmup["out"]) / f"n_jobs-{n_jobs}"
        generate_cohort(from_dict(SynthConfig, warmup["cfg"]), out, n_jobs=n_jobs, progress=False, overwrite=True)
        shutil.rmtree(out, ignore_errors=True)
    setup, timed = time.perf_counter() - t0, {}
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


def _dataset(data, graph: GraphConfig, modalities: frozenset[str]):
    """Every participant of the prepared cohort ``data`` as a ``CohortDataset`` (ages scaled on all)."""
    from amage_core.train.dataset import CohortDataset
    from amage_core.train.scaler import AgeScaler

    ids = data.participants["participant_id"].astype(str).tolist()
    scaler = AgeScaler.fit(data.participants["age"].to_numpy(dtype=float), ids)
    return CohortDataset(data, np.arange(data.n), graph, scaler, modalities)


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
    """Samples/s of three T1 input pipelines over the same participants: the prepared ``cohort``
    through ``CohortDataset`` + PyG ``DataLoader``; MONAI ``LoadImaged`` + ``Dataset`` re-reading
    each fMRIPrep ``*_desc-preproc_T1w.nii.gz`` of ``synth_root`` (channel first, intensities scaled
    by robust percentiles, resized to the prepared grid: the work the prepared cohort did once); the
    same in a MONAI ``CacheDataset``, whose rate is that of the passes after the one that fills it."""
    from monai.data import CacheDataset, DataLoader as MonaiLoader, Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityRangePercentilesd
    from torch_geometric.loader import DataLoader

    from amage_core.data.cohort import load_cohort

    data = load_cohort(cohort)
    prepared = _dataset(data, GraphConfig(), frozenset({"smri"}))
    prepared_rate, prepared_s = _rate(DataLoader(prepared, batch_size=batch_size, shuffle=False), epochs)
    anat = Path(synth_root) / "derivatives" / "fmriprep"
    files = [{"t1": str(anat / pid / "anat" / f"{pid}_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz")}
             for pid in data.participants["participant_id"].astype(str)]
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


def _train_step(net, batch, optimizer, autocast=contextlib.nullcontext) -> None:
    import torch.nn.functional as F

    with autocast():
        pred = net(batch).pred
    loss = F.mse_loss(pred.float(), batch.y.float())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def epochs(cohorts: dict[str, str], model: dict[str, Any], graph: dict[str, Any], batch_size: int,
           seed: int = 0) -> dict[str, Any]:
    """One training epoch of ``model`` over all of each prepared cohort (label -> folder), in turn,
    after an untimed warm-up step; building the graphs (``CohortDataset``) is timed apart."""
    import torch
    from torch_geometric.loader import DataLoader

    from amage_core.data.cohort import load_cohort
    from amage_core.models import build_model
    from amage_core.train.dataset import input_spec

    out = {}
    for label, path in cohorts.items():
        torch.manual_seed(seed)
        data = load_cohort(path)
        net = build_model(from_dict(ModelConfig, model), input_spec(data))
        t0 = time.perf_counter()
        dataset = _dataset(data, from_dict(GraphConfig, graph), frozenset(net.modalities))
        build = time.perf_counter() - t0
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.train()
        _train_step(net, next(iter(loader)), optimizer)     # warm-up (first-call allocations), untimed
        t0 = time.perf_counter()
        for batch in loader:
            _train_step(net, batch, optimizer)
        seconds = time.perf_counter() - t0
        out[label] = {"n": int(data.n), "dataset_seconds": build, "epoch_seconds": seconds,
                      "samples_per_s": data.n / seconds, "batch_size": batch_size}
    return out


def _timed_steps(step: dict[str, Any], model: dict[str, Any], seed: int, device: str = "cpu",
                 autocast=contextlib.nullcontext) -> dict[str, Any]:
    """Build ``model`` (ModelConfig fields) and a random batch of ``step``'s sizes
    (``models.testing.random_batch``) on ``device``; run ``step["warmup"]`` untimed, then
    ``step["steps"]`` timed training steps (forward, MSE, backward, Adam). The model and the batch
    are freed on return, so the next measurement's peak GPU memory does not hold them."""
    import torch

    from amage_core.models import InputSpec, build_model, count_parameters
    from amage_core.models.testing import random_batch

    torch.manual_seed(seed)
    n_roi, k = step["n_roi"], step["n_networks"]
    spec = InputSpec(n_roi=n_roi, node_features=n_roi, network_index=[i % k for i in range(n_roi)],
                     t1_shape=tuple(step["t1_shape"]))
    net = build_model(from_dict(ModelConfig, model), spec).to(device)
    batch = random_batch(spec, step["batch_size"], seed).to(device)
    if device == "cuda":
        net = net.to(memory_format=torch.channels_last_3d)
        batch.t1 = batch.t1.contiguous(memory_format=torch.channels_last_3d)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.train()
    times = []
    for _ in range(step["warmup"] + step["steps"]):
        t0 = time.perf_counter()
        _train_step(net, batch, optimizer, autocast)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_step = statistics.median(times[step["warmup"]:])
    return {"seconds_per_step": per_step, "samples_per_s": step["batch_size"] / per_step,
            "step_seconds": times[step["warmup"]:], "parameters": int(count_parameters(net)["total"])}


def step(step: dict[str, Any], model: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Seconds per training step and samples/s of ``model`` (ModelConfig fields) on CPU."""
    import torch

    return {**_timed_steps(step, model, seed), "threads": torch.get_num_threads()}


def cuda_step(step: dict[str, Any], model: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """fp32 and bf16-autocast training steps on the GPU: seconds, samples/s, peak GPU memory."""
    import torch

    if not torch.cuda.is_available():
        return {"available": False}
    out: dict[str, Any] = {"available": True, "device": torch.cuda.get_device_name(0),
                           "total_memory_gb": torch.cuda.get_device_properties(0).total_memory / 2**30}
    bf16 = lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)    # noqa: E731
    for name, autocast in (("fp32", contextlib.nullcontext), ("bf16", bf16)):
        try:
            r = _timed_steps(step, model, seed, "cuda", autocast)
        except torch.cuda.OutOfMemoryError as exc:
            out[name] = {"error": f"out of memory: {exc}"[:300]}
        else:
            out[name] = {"seconds_per_step": r["seconds_per_step"], "samples_per_s": r["samples_per_s"],
                         "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}
        torch.cuda.empty_cache()
    return out


TASKS = {"synth": synth, "prep": prep, "pipeline": pipeline, "epochs": epochs, "step": step, "cuda_step": cuda_step}
