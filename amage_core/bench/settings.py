"""What a benchmark run measures, and at which sizes: :class:`BenchSettings` (``--quick`` or full).

The accuracy profile is the user's profile (``demo`` by default) with the camcan-like and oasis3-like
cohorts resized (:func:`accuracy_profile`), so every model is cross-validated on the same folds by
``workflow.run``. Everything else (throughput, memory, scaling) runs on scratch cohorts generated
under ``<workdir>/bench-scratch`` and removed afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amage_core.config import Profile, replace

DEEP_MODELS = ("amagenet", "released-code", "fmri", "smri", "sfcn")
BASELINE_MODELS = ("ridge-fc", "brainage-gpr", "stacking")
TRANSFER_MODELS = ("amagenet", "stacking")
FLOOR_MARGIN = 0.25             # the aim: AMAge-Net's MAE within 25% of the multimodal floor's
FUSION_AIM = 0.95               # issue 15: AMAge-Net at least 5% below each single-branch model (MAE ratio)


@dataclass
class StepSize:
    """One training-step measurement: model sizes and the grid they run on."""

    name: str                                  # "demo", "paper", ...
    t1_shape: tuple[int, int, int]
    n_roi: int
    n_networks: int
    batch_size: int
    warmup: int = 1
    steps: int = 3
    profile: str = "demo"                      # whose model sizes: the demo or the paper profile's
    model: dict[str, Any] = field(default_factory=dict)   # overrides of that profile's ModelConfig
    note: str = ""


@dataclass
class BenchSettings:
    """Sizes of every measurement: :data:`QUICK` or :data:`FULL`."""

    mode: str
    # accuracy: cohorts of the profile resized, training shortened where needed
    n_camcan: int
    n_oasis3: int
    cohort_overrides: dict[str, Any]        # SynthConfig fields for both accuracy cohorts
    profile_overrides: dict[str, Any]       # prep/model/train sections changed for the accuracy profile
    # scaling: participants of the 1x scratch cohort (2x and 4x are multiples)
    scale_base: int
    n_bold: int                             # participants with voxelwise BOLD for the NIfTI path
    pipeline_epochs: int                    # passes over the 1x cohort per input pipeline
    pipeline_batch: int
    epoch_batch: int
    steps: list[StepSize]
    cuda_step: StepSize
    models: tuple[str, ...] = DEEP_MODELS + BASELINE_MODELS   # cross-validated on the camcan-like cohort
    transfer_models: tuple[str, ...] = TRANSFER_MODELS        # trained on camcan-like, tested on oasis3-like
    prep_n_jobs: int | None = None          # None: the profile's
    seed: int = 0


_TINY_MODEL = {
    "gat": {"hidden": 8, "heads": 2, "out_dim": 16},
    "densenet": {"init_features": 8, "growth_rate": 4, "block_config": [1, 1], "out_dim": 16},
    "sfcn": {"channels": [4, 8, 16], "out_dim": 16},
    "fusion": {"dim": 16, "heads": 2},
    "head_hidden": 16,
}

QUICK = BenchSettings(
    mode="quick", n_camcan=48, n_oasis3=24,
    cohort_overrides={"voxel_size": 8.0, "n_bold_nifti": 0, "bold_voxel_size": 8.0},
    profile_overrides={"prep": {"t1_shape": [16, 20, 16]}, "graph": {"topk": 6}, "model": _TINY_MODEL,
                       "train": {"epochs": 2, "folds": 2, "val_fraction": 0.3, "seeds": 2}},
    scale_base=8, n_bold=1, pipeline_epochs=2, pipeline_batch=4, epoch_batch=4,
    steps=[StepSize("demo", (16, 20, 16), 160, 6, batch_size=4, warmup=1, steps=2, model=_TINY_MODEL,
                    note="quick: tiny sizes"),
           StepSize("paper", (32, 32, 32), 300, 13, batch_size=2, warmup=1, steps=1, profile="paper",
                    note="quick: paper sizes on a 32^3 grid, batch 2")],
    cuda_step=StepSize("paper", (64, 64, 64), 300, 13, batch_size=2, warmup=1, steps=2, profile="paper",
                       note="quick: 64^3, batch 2"),
    # a few models only: brainage-gpr and stacking tune by nested inner CV (hundreds of GPR fits,
    # minutes even on 48 participants); the other variants are exercised by their own tests
    models=("amagenet", "released-code", "ridge-fc"), transfer_models=("amagenet",), prep_n_jobs=1,
)

FULL = BenchSettings(
    mode="full", n_camcan=652, n_oasis3=120,
    cohort_overrides={"voxel_size": 6.0, "n_bold_nifti": 0},
    # 3 outer folds (435 training participants per fold), whatever the demo book's own count (2, for
    # the book's time): the Cam-CAN-scale figures stay comparable from run to run
    profile_overrides={"train": {"folds": 3}},
    scale_base=163, n_bold=12, pipeline_epochs=3, pipeline_batch=16, epoch_batch=16,
    steps=[StepSize("demo", (32, 40, 32), 160, 6, batch_size=16, warmup=2, steps=5,
                    note="the demo profile's sizes and grid"),
           StepSize("paper", (128, 128, 128), 300, 13, batch_size=8, warmup=1, steps=2, profile="paper",
                    note="the paper profile's sizes (DenseNet121 on 128^3, GAT 64x4 heads on 300 ROIs), batch 8")],
    cuda_step=StepSize("paper", (128, 128, 128), 300, 13, batch_size=8, warmup=3, steps=10, profile="paper",
                       note="the paper profile: DenseNet121 on 128^3, batch 8"),
)


def accuracy_profile(base: Profile, s: BenchSettings, workdir: str | None = None) -> Profile:
    """``base`` with its camcan and oasis3 cohorts resized (and the quick sizes when ``s`` is quick)."""
    if "camcan" not in base.cohorts or "oasis3" not in base.cohorts:
        raise ValueError(f"profile {base.name!r} needs synthetic 'camcan' and 'oasis3' cohorts to benchmark")
    cohorts = {}
    for name, n in (("camcan", s.n_camcan), ("oasis3", s.n_oasis3)):
        if base.cohorts[name].source != "synthetic":
            raise ValueError(f"profile {base.name!r}: cohort {name!r} is real data; the benchmark needs "
                             "a synthetic cohort (its floor is the reference)")
        cohorts[name] = {"synth": {**s.cohort_overrides, "n_subjects": n}}
    changes: dict[str, Any] = {"name": f"{base.name}-bench-{s.mode}", "cohorts": cohorts,
                               **s.profile_overrides}
    if workdir is not None:
        changes["workdir"] = workdir
    return replace(base, **changes)
