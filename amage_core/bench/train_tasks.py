"""Training-side benchmark tasks, each run in its own process by :mod:`amage_core.bench.worker`.

- :func:`step`: training steps (forward, MSE, backward, Adam) of one model size on synthetic
  inputs of the right shapes (``models.testing.random_batch``), after warm-up steps;
- :func:`epochs`: one training epoch over every participant of each prepared cohort (``CohortDataset``
  + PyG ``DataLoader``), the graph building timed apart;
- :func:`cuda_step`: :func:`step` on the GPU, fp32 and bf16 autocast, with peak GPU memory.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from amage_core.config import ModelConfig, from_dict


def _spec(step: dict[str, Any]):
    from amage_core.models import InputSpec

    n_roi, k = step["n_roi"], step["n_networks"]
    return InputSpec(n_roi=n_roi, node_features=n_roi, network_index=[i % k for i in range(n_roi)],
                     t1_shape=tuple(step["t1_shape"]))


def _train_step(model, batch, optimizer, autocast=None) -> None:
    import contextlib

    import torch.nn.functional as F

    with autocast or contextlib.nullcontext():
        pred = model(batch).pred
    loss = F.mse_loss(pred.float(), batch.y.float())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _timed_steps(model, batch, optimizer, warmup: int, steps: int, sync=None, autocast=None) -> list[float]:
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        _train_step(model, batch, optimizer, autocast() if autocast else None)
        if sync is not None:
            sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def step(step: dict[str, Any], model: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Seconds per training step and samples/s of ``model`` (ModelConfig fields) on CPU."""
    import torch

    from amage_core.models import build_model, count_parameters
    from amage_core.models.testing import random_batch

    torch.manual_seed(seed)
    cfg = from_dict(ModelConfig, model)
    net = build_model(cfg, _spec(step))
    batch = random_batch(_spec(step), step["batch_size"], seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.train()
    times = _timed_steps(net, batch, optimizer, step["warmup"], step["steps"])
    per_step = statistics.median(times)
    return {"seconds_per_step": per_step, "samples_per_s": step["batch_size"] / per_step,
            "step_seconds": times, "parameters": int(count_parameters(net)["total"]),
            "threads": torch.get_num_threads()}


def epochs(cohorts: dict[str, str], model: dict[str, Any], graph: dict[str, Any], batch_size: int,
           seed: int = 0) -> dict[str, Any]:
    """One training epoch of ``model`` over all of each prepared cohort (label -> folder), in turn."""
    import torch
    from torch_geometric.loader import DataLoader

    from amage_core.config import GraphConfig
    from amage_core.data.cohort import load_cohort
    from amage_core.models import build_model
    from amage_core.train.dataset import CohortDataset, input_spec
    from amage_core.train.scaler import AgeScaler

    out = {}
    for label, path in cohorts.items():
        torch.manual_seed(seed)
        data = load_cohort(path)
        net = build_model(from_dict(ModelConfig, model), input_spec(data))
        ids = data.participants["participant_id"].astype(str).tolist()
        scaler = AgeScaler.fit(data.participants["age"].to_numpy(dtype=float), ids)
        t0 = time.perf_counter()
        dataset = CohortDataset(data, np.arange(data.n), from_dict(GraphConfig, graph), scaler,
                                frozenset(net.modalities))
        build = time.perf_counter() - t0
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
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


def cuda_step(step: dict[str, Any], model: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """fp32 and bf16-autocast training steps on the GPU: seconds, samples/s, peak GPU memory."""
    import torch

    from amage_core.models import build_model
    from amage_core.models.testing import random_batch

    if not torch.cuda.is_available():
        return {"available": False}
    device = torch.device("cuda")
    torch.manual_seed(seed)
    spec = _spec(step)
    out: dict[str, Any] = {"available": True, "device": torch.cuda.get_device_name(device),
                           "total_memory_gb": torch.cuda.get_device_properties(device).total_memory / 2**30}
    for name, amp in (("fp32", False), ("bf16", True)):
        net = build_model(from_dict(ModelConfig, model), spec).to(device)
        net = net.to(memory_format=torch.channels_last_3d)
        batch = random_batch(spec, step["batch_size"], seed).to(device)
        batch.t1 = batch.t1.contiguous(memory_format=torch.channels_last_3d)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        net.train()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        autocast = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if amp else None
        try:
            times = _timed_steps(net, batch, optimizer, step["warmup"], step["steps"],
                                 sync=torch.cuda.synchronize, autocast=autocast)
        except torch.cuda.OutOfMemoryError as exc:
            out[name] = {"error": f"out of memory: {exc}"[:300]}
        else:
            per_step = statistics.median(times)
            out[name] = {"seconds_per_step": per_step, "samples_per_s": step["batch_size"] / per_step,
                         "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20}
        del net, batch, optimizer
    return out
