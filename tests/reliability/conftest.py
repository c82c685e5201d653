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

from rel_helpers import PREP_SETTINGS, SYNTH, tiny_profile  # noqa: E402


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
