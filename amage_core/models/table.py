"""Structural-table encoder: one token per regional measure (FreeSurfer-style tables).

Each measure is standardised by a parameter-free BatchNorm (running statistics, so raw volumes in
mm^3 and thicknesses in mm can be mixed; a training batch of one participant, which cannot
estimate batch statistics, is standardised with the running ones), then
token_f = value_f * e_f + b_f with a learned embedding e_f and bias b_f per feature, refined by a
per-token residual MLP (no LayerNorm: it would erase the value's magnitude). The embedding is the
token mean (an additive model over features).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from amage_core.config import TableConfig
from amage_core.models.spec import Encoding


class Standardise(nn.BatchNorm1d):
    """Parameter-free BatchNorm1d that falls back to its running statistics for a batch of one."""

    def __init__(self, n_features: int) -> None:
        super().__init__(n_features, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (B, F) -> (B, F)."""
        if self.training and x.shape[0] < 2:
            return F.batch_norm(x, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(x)


class TableEncoder(nn.Module):
    """(B, F_tab) measures -> (B, F_tab, out_dim) tokens and (B, out_dim) embedding."""

    def __init__(self, cfg: TableConfig, n_features: int) -> None:
        super().__init__()
        self.standardise = Standardise(n_features)
        self.feature_embedding = nn.Parameter(torch.empty(n_features, cfg.out_dim))
        self.feature_bias = nn.Parameter(torch.zeros(n_features, cfg.out_dim))
        nn.init.normal_(self.feature_embedding, std=cfg.out_dim ** -0.5)
        self.mlp = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(cfg.out_dim, cfg.hidden)),
            ("act", nn.GELU()),
            ("drop", nn.Dropout(cfg.dropout)),
            ("fc2", nn.Linear(cfg.hidden, cfg.out_dim)),
        ]))
        self.n_tokens = n_features
        self.token_dim = cfg.out_dim
        self.embedding_dim = cfg.out_dim

    def forward(self, tab: Tensor) -> Encoding:
        """Shapes: tab (B, F_tab) -> tokens (B, F_tab, out_dim), embedding (B, out_dim)."""
        values = self.standardise(tab).unsqueeze(-1)                       # (B, F, 1)
        tokens = values * self.feature_embedding + self.feature_bias       # (B, F, d)
        tokens = tokens + self.mlp(tokens)
        return Encoding(tokens=tokens, embedding=tokens.mean(dim=1))
