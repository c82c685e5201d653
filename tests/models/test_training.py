"""A short training on an easy synthetic signal beats the mean predictor, for every variant."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from amage_core.models import VARIANTS, build_model
from amage_core.models.testing import synthetic_participants, tiny_config, tiny_spec

N_TRAIN, N_TEST, BATCH, EPOCHS, LR = 64, 32, 16, 20, 3e-3


@pytest.fixture(scope="module")
def split():
    data = synthetic_participants(tiny_spec(), N_TRAIN + N_TEST, seed=3)
    train = [Batch.from_data_list(data[i:i + BATCH]) for i in range(0, N_TRAIN, BATCH)]
    return train, Batch.from_data_list(data[N_TRAIN:])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_short_training_beats_the_mean_predictor(variant, split):
    train, test = split
    model = build_model(tiny_config(variant), tiny_spec())
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        model.train()
        for batch in train:
            loss = (model(batch).pred - batch.y).square().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        mse = (model(test).pred - test.y).square().mean()
    train_mean = torch.cat([b.y for b in train]).mean()
    mean_predictor = (train_mean - test.y).square().mean()
    assert mse < 0.5 * mean_predictor, f"{variant}: MSE {mse:.4f} vs mean predictor {mean_predictor:.4f}"
