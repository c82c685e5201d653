"""The gpu profile (one 16 GB card): the paper's model sizes, a 652-participant camcan-like cohort on a
grid smaller than the paper's, and a train section that leaves the recipe to TrainConfig's defaults."""
from __future__ import annotations

from pathlib import Path

import yaml

from amage_core import book
from amage_core.config import load_profile, to_dict

REPO = Path(__file__).resolve().parent.parent


def test_gpu_profile_has_the_paper_model_sizes_and_a_cohort_of_652():
    gpu, paper = load_profile("gpu"), load_profile("paper")
    model = to_dict(gpu.model)
    model["densenet"]["checkpointing"] = True          # the one difference: no recomputation on the GPU
    assert model == to_dict(paper.model)
    assert gpu.cohorts["camcan"].synth.n_subjects == 652
    assert gpu.prep.atlas == paper.prep.atlas
    assert all(g <= p for g, p in zip(gpu.prep.t1_shape, paper.prep.t1_shape))


def test_gpu_profile_train_section_is_minimal():
    raw = yaml.safe_load((REPO / "amage_core/profiles/gpu.yml").read_text())
    assert set(raw["train"]) <= {"epochs", "batch_size", "folds", "amp"}


def test_gpu_profile_chapter_parameters_are_declared():
    prof = load_profile("gpu")
    for notebook in book.find_chapters():
        book.chapter_parameters(prof, "gpu", notebook)
