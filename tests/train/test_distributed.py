"""DistributedDataParallel: 2 CPU processes (gloo) follow the loss curve of 1 process, same global batch."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from amage_core.config import GraphConfig, TrainConfig
from amage_core.train import distributed
from amage_core.train.dataset import CohortDataset, input_spec
from amage_core.train.loop import fit
from amage_core.train.scaler import AgeScaler
from train_fixtures import TinyModel, make_cohort

CFG = TrainConfig(epochs=4, batch_size=8, lr=0.01, seed=0, device="cpu")


def _fit(root, out):
    cohort = make_cohort(root, n=32)
    part = cohort.participants
    fit_rows, val_rows = np.arange(24), np.arange(24, 32)
    scaler = AgeScaler.fit(part["age"].iloc[fit_rows], part["participant_id"].iloc[fit_rows])
    mods = frozenset({"fmri", "smri", "table"})
    graph = GraphConfig(topk=3)
    torch.manual_seed(0)
    model = TinyModel(input_spec(cohort), dropout=0.0)
    result = fit(model, CohortDataset(cohort, fit_rows, graph, scaler, mods),
                 CohortDataset(cohort, val_rows, graph, scaler, mods), CFG, out, progress=False)
    return model, result


def _worker(rank: int, world: int, store: str, root, out) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        assert distributed.context().world_size == world
        _fit(root, out)
    finally:
        dist.destroy_process_group()


def test_two_processes_follow_the_single_process_loss_curve(tmp_path):
    _, single = _fit(tmp_path / "cohort", tmp_path / "single")
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), tmp_path / "cohort", tmp_path / "ddp"),
             nprocs=2, join=True)
    ddp = pd.read_csv(tmp_path / "ddp" / "history.csv")
    assert len(ddp) == CFG.epochs
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(ddp[column], single.history[column], rtol=1e-4, atol=1e-6)
    assert ddp["train_loss"].iloc[-1] < ddp["train_loss"].iloc[0]     # it did learn


def test_local_batch_splits_the_global_batch():
    assert distributed.local_batch_size(8, distributed.DistContext(0, 2, 0)) == 4
    assert not distributed.context().enabled
