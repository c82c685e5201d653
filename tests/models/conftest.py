"""Shared fixtures of the model tests: tiny inputs (amage_core.models.testing), fixed seeds."""
from __future__ import annotations

import pytest
import torch

from amage_core.models import InputSpec
from amage_core.models.testing import random_batch, tiny_spec


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def spec() -> InputSpec:
    return tiny_spec()


@pytest.fixture(scope="session")
def batch(spec):
    return random_batch(spec, batch_size=4, seed=1)
