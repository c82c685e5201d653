"""Fixtures for the training-engine tests (helpers in ``train_fixtures``)."""
from __future__ import annotations

import pytest

from amage_core.config import GraphConfig, TrainConfig
from amage_core.data.cohort import PreparedCohort
from train_fixtures import make_cohort


@pytest.fixture
def cohort(tmp_path) -> PreparedCohort:
    return make_cohort(tmp_path / "cohort")


@pytest.fixture
def fast_cfg() -> TrainConfig:
    return TrainConfig(epochs=3, batch_size=8, lr=0.01, folds=3, seed=0, val_fraction=0.2,
                       device="cpu")


@pytest.fixture
def graph_cfg() -> GraphConfig:
    return GraphConfig(sparsify="topk", topk=3)
