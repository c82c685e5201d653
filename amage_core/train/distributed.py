"""Data-parallel training with ``torch.distributed`` (DistributedDataParallel), launched by torchrun.

``torchrun --nproc_per_node=N -m amage_core train ...`` starts N processes; each calls
:func:`init_from_env`, which joins the process group (NCCL on GPUs, gloo on CPU) and pins its GPU.
:func:`amage_core.train.loop.fit` then wraps the model in DDP and gives every process its share of
each global batch through a ``DistributedSampler`` (per-process batch = global batch / N), so N
processes follow the same loss curve as one process with the same global batch. Every process
evaluates the whole validation set (identical weights give identical decisions for the scheduler
and early stopping); only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def context() -> DistContext:
    """The current process group (rank 0 of 1 when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistContext(dist.get_rank(), dist.get_world_size(), local)
    return DistContext()


def init_from_env(backend: str | None = None) -> DistContext:
    """Join the process group that torchrun describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...).

    Without those variables (a plain ``python`` run) nothing happens and rank 0 of 1 is returned.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return context()
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    return context()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if context().enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all processes (identity for one process)."""
    if not context().enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def local_batch_size(global_batch: int, ctx: DistContext) -> int:
    """Per-process batch so that all processes together see ``global_batch`` samples per step."""
    if global_batch % ctx.world_size:
        raise ValueError(f"batch_size {global_batch} is not divisible by {ctx.world_size} processes")
    return global_batch // ctx.world_size
