"""Synthetic inputs for tests and demos: participants whose inputs encode their age.

Fixed patterns (drawn from ``pattern_seed``, shared by every call) carry the age signal; each
participant's age and noise come from ``seed``:

- connectivity: base + signal * age * u u^T (u = +-1 on the first half of the ROIs) + noise;
- T1: template + signal * age * (a Gaussian blob in the middle of the grid) + noise;
- table: per-feature scales spanning three decades (like raw volumes and thicknesses) times
  (1 + signal * age * w + noise), w a fixed direction.

Ages are uniform in [0, 1] (already "scaled", as the trainer scales them).
:func:`tiny_spec` and :func:`tiny_config` give inputs and models small enough for unit tests.
"""
from __future__ import annotations

import numpy as np
from torch_geometric.data import Batch, Data

from amage_core.config import (
    DenseNetConfig,
    FusionConfig,
    GATConfig,
    GraphConfig,
    ModelConfig,
    SFCNConfig,
    TableConfig,
)
from amage_core.data.graph import fc_to_graph, participant_data
from amage_core.models.spec import InputSpec

TABLE_DECADES = 3          # raw table scales span 10^0 .. 10^3
BLOB_WIDTH = 0.25          # squared radius of the T1 age blob, grid spanning [-1, 1]
TINY_NETWORKS = (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2)   # tiny_spec: 12 ROIs in 3 networks
TINY_T1_SHAPE = (16, 16, 16)
TINY_TABLE_FEATURES = 6


def tiny_spec() -> InputSpec:
    """Every modality, tiny: 12 ROIs in 3 networks, a 16^3 T1 grid, 6 table features."""
    n_roi = len(TINY_NETWORKS)
    return InputSpec(n_roi=n_roi, node_features=n_roi, network_index=list(TINY_NETWORKS),
                     t1_shape=TINY_T1_SHAPE, n_table_features=TINY_TABLE_FEATURES)


def tiny_config(variant: str = "amagenet", smri_encoder: str = "densenet") -> ModelConfig:
    """A ModelConfig small enough for unit tests (a few thousand parameters per branch)."""
    return ModelConfig(
        variant=variant,
        smri_encoder=smri_encoder,
        gat=GATConfig(hidden=8, heads=2, out_dim=16, roi_layers=2, n_learned_networks=3),
        densenet=DenseNetConfig(init_features=8, growth_rate=4, block_config=(2, 2), bn_size=2, out_dim=16),
        sfcn=SFCNConfig(channels=(4, 8, 16), out_dim=16, dropout=0.1),
        table=TableConfig(out_dim=16, hidden=32),
        fusion=FusionConfig(dim=16, heads=2),
        head_hidden=16,
    )


def synthetic_participants(
    spec: InputSpec,
    n: int,
    seed: int,
    graph: GraphConfig | None = None,
    signal: float = 1.0,
    noise: float = 0.3,
    pattern_seed: int = 0,
) -> list[Data]:
    """``n`` participants with every modality of ``spec``; ``y`` is the age in [0, 1]."""
    graph = graph or GraphConfig()
    patterns = np.random.default_rng(pattern_seed)
    rng = np.random.default_rng(seed)
    ages = rng.uniform(0.0, 1.0, size=n)
    fmri = spec.n_roi is not None and spec.node_features is not None
    if fmri:
        r = spec.n_roi
        base = _symmetric(patterns, r, noise)
        u = np.where(np.arange(r) < r // 2, 1.0, -1.0)
        age_pattern = np.outer(u, u)
    if spec.t1_shape is not None:
        template = patterns.normal(size=spec.t1_shape)
        grid = np.meshgrid(*[np.linspace(-1.0, 1.0, s) for s in spec.t1_shape], indexing="ij")
        blob = np.exp(-sum(g ** 2 for g in grid) / BLOB_WIDTH)
    if spec.n_table_features is not None:
        scales = 10.0 ** patterns.uniform(0.0, TABLE_DECADES, size=spec.n_table_features)
        direction = patterns.normal(size=spec.n_table_features)

    participants = []
    for i, age in enumerate(ages):
        graph_arrays = t1 = tab = None
        if fmri:
            fc = base + signal * age * age_pattern + _symmetric(rng, spec.n_roi, noise)
            graph_arrays = fc_to_graph(fc, graph)
        if spec.t1_shape is not None:
            t1 = template + signal * age * blob + noise * rng.normal(size=spec.t1_shape)
        if spec.n_table_features is not None:
            tab = scales * (1.0 + signal * age * direction + noise * rng.normal(size=direction.shape))
        participants.append(participant_data(y=float(age), idx=i, graph=graph_arrays, t1=t1, tab=tab))
    return participants


def random_batch(spec: InputSpec, batch_size: int, seed: int) -> Batch:
    """A batch of ``batch_size`` synthetic participants (see :func:`synthetic_participants`)."""
    return Batch.from_data_list(synthetic_participants(spec, batch_size, seed))


def _symmetric(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    a = rng.normal(scale=scale, size=(n, n))
    return (a + a.T) / 2
