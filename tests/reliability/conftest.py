"""Fixtures of the reliability tests: one tiny synthetic source and its reference preparation,
made once per session (the kill/resume tests compare against these)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "data"):          # rel_helpers, prep_fixtures
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from rel_helpers import PREP_SETTINGS, SYNTH, tiny_profile, train_args  # noqa: E402


@pytest.fixture(scope="session")
def profile_path(tmp_path_factory) -> Path:
    """The tiny profile (2 folds, 2 epochs, the smallest model) every `amage` call here uses."""
    root = tmp_path_factory.mktemp("profile")
    return tiny_profile(root / "tiny.yml", root / "work")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A 20-participant synthetic BIDS source (fMRIPrep T1 + XCP-D time series)."""
    from amage_core.synth import generate_cohort

    return generate_cohort(SYNTH, tmp_path_factory.mktemp("synth") / "source", progress=False)


@pytest.fixture(scope="session")
def prepared_ref(synth_root, tmp_path_factory) -> Path:
    """The uninterrupted preparation of ``synth_root`` (the reference the resumed runs must equal)."""
    from amage_core.config import PrepConfig
    from amage_core.data.prepare import prepare_cohort

    out = tmp_path_factory.mktemp("prepared") / "reference"
    cfg = PrepConfig(**{**PREP_SETTINGS, "t1_shape": tuple(PREP_SETTINGS["t1_shape"])})
    prepare_cohort("bids", synth_root, out, cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def train_ref(prepared_ref, profile_path, tmp_path_factory) -> tuple[Path, int]:
    """An uninterrupted `amage train` run (in this process: the same code path as the command,
    without another torch import) and its number of training batches."""
    import torch.nn.functional as F

    from amage_core.cli import main

    out = tmp_path_factory.mktemp("runs") / "reference"
    original, steps = F.mse_loss, []

    def counted(*args, **kwargs):
        steps.append(1)
        return original(*args, **kwargs)

    F.mse_loss = counted
    try:
        assert main(train_args(prepared_ref, out, profile_path)) == 0
    finally:
        F.mse_loss = original
    return out, len(steps)
