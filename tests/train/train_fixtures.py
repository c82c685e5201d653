"""Helpers for the training-engine tests: tiny cohorts whose inputs encode age, a tiny model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from amage_core.config import ModelConfig
from amage_core.data.cohort import PreparedCohort, write_cohort
from amage_core.models.spec import ModelOutput

# T1 of 8^3: on a 6^3 or 7^3 grid the DenseNet stem (7^3 conv, stride 2) hits a oneDNN bug in
# PyTorch 2.13 on CPU: its weight gradient reads uninitialised memory (NaN under deterministic
# algorithms, which fill such memory with NaN; otherwise a small random error)
N_ROI, T1_SHAPE, N_TAB = 8, (8, 8, 8), 5


def make_cohort(root: Path, n: int = 36, seed: int = 0, name: str = "camcan-like",
                age_range: tuple[float, float] = (20.0, 80.0), noise: float = 0.3,
                sessions: bool = False) -> PreparedCohort:
    """A prepared cohort of ``n`` participants at ``root`` (``n // 2`` subjects with two sessions
    each when ``sessions``) whose connectivity, T1 and table all carry a linear age signal."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(1234)
    n_subjects = n // 2 if sessions else n
    subject_age = rng.uniform(*age_range, size=n_subjects)
    ids = [f"sub-{i:04d}" for i in range(n_subjects)]
    if sessions:
        ids = [i for i in ids for _ in range(2)]
        age = np.repeat(subject_age, 2) + np.tile([0.0, 2.0], n_subjects)
        session = ["1", "2"] * n_subjects
    else:
        age, session = subject_age, ["1"] * n
    z = (age - 50.0) / 20.0
    u = np.where(np.arange(N_ROI) < N_ROI // 2, 1.0, -1.0)
    fc = 0.3 * z[:, None, None] * np.outer(u, u) + noise * rng.normal(size=(n, N_ROI, N_ROI))
    fc = (fc + fc.transpose(0, 2, 1)) / 2
    fc[:, np.arange(N_ROI), np.arange(N_ROI)] = 0.0
    blob = patterns.normal(size=T1_SHAPE)
    # the T1 noise has its own generator, so the grid's size leaves the other arrays' draws alone
    t1_noise = np.random.default_rng([seed, 1]).normal(size=(n,) + T1_SHAPE)
    t1 = z[:, None, None, None] * blob + noise * t1_noise
    direction = patterns.normal(size=N_TAB)
    tables = z[:, None] * direction + noise * rng.normal(size=(n, N_TAB))
    participants = pd.DataFrame({
        "participant_id": ids, "age": age, "sex": rng.choice(["M", "F"], size=n), "cohort": name,
        "site": "site-1", "session": session,
    })
    regions = pd.DataFrame({"index": range(N_ROI), "name": [f"r{i}" for i in range(N_ROI)],
                            "network": ["a"] * 4 + ["b"] * 4, "x": 0.0, "y": 0.0, "z": 0.0})
    return write_cohort(root, participants, connectivity=fc, t1=t1, tables=tables,
                        table_columns=[f"t{i}" for i in range(N_TAB)], regions=regions)


class TinyModel(nn.Module):
    """A linear brain-age model honouring the BrainAgeModel interface (+ dropout and a gate)."""

    def __init__(self, spec, modalities=("fmri", "smri", "table"), dropout: float = 0.1):
        super().__init__()
        self.modalities = frozenset(modalities)
        self.fmri = nn.Linear(spec.n_roi * spec.node_features, 4) if "fmri" in self.modalities else None
        self.smri = nn.Linear(int(np.prod(spec.t1_shape)), 4) if "smri" in self.modalities else None
        self.table = nn.Linear(spec.n_table_features, 4) if "table" in self.modalities else None
        self.drop = nn.Dropout(dropout)
        self.gate = nn.Linear(4, 1)
        self.head = nn.Linear(4, 1)

    def forward(self, batch) -> ModelOutput:
        parts = []
        if self.fmri is not None:
            parts.append(self.fmri(batch.x.view(batch.num_graphs, -1)))   # (B, R*R)
        if self.smri is not None:
            parts.append(self.smri(batch.t1.flatten(1)))
        if self.table is not None:
            parts.append(self.table(batch.tab))
        embedding = self.drop(torch.stack(parts).sum(0))
        return ModelOutput(pred=self.head(embedding).squeeze(-1), embedding=embedding,
                           gate=torch.sigmoid(self.gate(embedding)))


def tiny_factory(modalities=("fmri", "smri", "table"), dropout: float = 0.1):
    def build(cfg: ModelConfig, spec) -> TinyModel:
        return TinyModel(spec, modalities, dropout)
    return build
