"""A tiny synthetic cohort shared by the synth tests (24 participants, 8 mm, 80 volumes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from amage_core.config import SynthConfig


def tiny_config(**changes) -> SynthConfig:
    base = dict(n_subjects=24, seed=3, voxel_size=8.0, n_bold_nifti=3, n_volumes=80,
                extra_atlases=["seitzman300"])
    base.update(changes)
    return SynthConfig(**base)


@pytest.fixture(scope="session")
def tiny_cfg() -> SynthConfig:
    return tiny_config()


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory, tiny_cfg) -> Path:
    from amage_core.synth import generate_cohort

    return generate_cohort(tiny_cfg, tmp_path_factory.mktemp("synth") / "cohort", progress=False)
