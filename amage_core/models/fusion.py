"""Fusion of the fMRI and structural branches, and the regression head.

:class:`Fusion` (``FusionConfig``):

1. Both token sets are projected to ``dim`` (identity when already ``dim`` wide). The fMRI set is
   the brain-level embedding followed by the network (or ROI) tokens (``fmri_query="tokens"``), or
   the embedding alone (``"embedding"``: the released code's single query token). A learned
   position embedding per token is added (``position_embedding``).
2. Cross-attention (``cross_attention``), :class:`~amage_core.models.attention.AttentionBlock`
   (multi-head attention, residual + LayerNorm, FFN, residual + LayerNorm): fMRI tokens attend to the
   structural tokens (``fmri-to-smri``), the reverse (``smri-to-fmri``), or ``both``. The fMRI
   representation f is the mean of the fMRI tokens after their cross-attention (or before, when
   only the reverse direction runs); likewise s for the structural side. Without cross-attention,
   f and s are the two projected pooled embeddings. Attention is always between token sets (a
   softmax over a single key would be constant 1).
3. ``combine``: ``gate`` -> g = sigmoid(MLP([f; s])), fused = g * f + (1 - g) * s, with g (B, dim)
   (``gate="vector"``) or (B, 1) (``"scalar"``, the released code's commented-out gate);
   ``concat`` -> [f; s]; ``query`` -> f alone (the released code's active model).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from amage_core.config import FusionConfig
from amage_core.models.attention import AttentionBlock
from amage_core.models.spec import Encoding, masked_mean


def _projection(in_dim: int, dim: int) -> nn.Module:
    return nn.Identity() if in_dim == dim else nn.Linear(in_dim, dim)


def _positions(n_tokens: int, dim: int) -> nn.Parameter:
    table = nn.Parameter(torch.empty(n_tokens, dim))
    nn.init.normal_(table, std=dim ** -0.5)
    return table


class GatedFusion(nn.Module):
    """g = sigmoid(W2 relu(W1 [f; s])); fused = g * f + (1 - g) * s."""

    def __init__(self, dim: int, kind: str) -> None:
        super().__init__()
        width = dim if kind == "vector" else 1
        self.gate = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(2 * dim, dim)),
            ("act", nn.ReLU()),
            ("fc2", nn.Linear(dim, width)),
            ("sigmoid", nn.Sigmoid()),
        ]))

    def forward(self, f: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: f (B, d) fMRI, s (B, d) structural -> fused (B, d), gate (B, G), G = d or 1."""
        gate = self.gate(torch.cat([f, s], dim=-1))
        return gate * f + (1 - gate) * s, gate


class Fusion(nn.Module):
    """Cross-attention between the fMRI and structural token sets, then gate / concat / query."""

    def __init__(
        self, cfg: FusionConfig, fmri_dim: int, n_fmri_tokens: int, smri_dim: int, n_smri_tokens: int
    ) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"fusion.dim ({cfg.dim}) must be divisible by fusion.heads ({cfg.heads})")
        if cfg.combine == "query" and not (cfg.cross_attention and cfg.direction != "smri-to-fmri"):
            raise ValueError("fusion.combine='query' needs cross_attention with fMRI queries "
                             "(direction 'fmri-to-smri' or 'both')")
        self.cfg = cfg
        self.fmri_proj = _projection(fmri_dim, cfg.dim)
        self.smri_proj = _projection(smri_dim, cfg.dim)
        cross = cfg.cross_attention
        n_fmri = 1 if cfg.fmri_query == "embedding" else 1 + n_fmri_tokens
        positions = cross and cfg.position_embedding
        self.fmri_position = _positions(n_fmri, cfg.dim) if positions else None
        self.smri_position = _positions(n_smri_tokens, cfg.dim) if positions else None
        self.fmri_to_smri = self._block() if cross and cfg.direction != "smri-to-fmri" else None
        self.smri_to_fmri = self._block() if cross and cfg.direction != "fmri-to-smri" else None
        self.gate = GatedFusion(cfg.dim, cfg.gate) if cfg.combine == "gate" else None
        self.out_dim = 2 * cfg.dim if cfg.combine == "concat" else cfg.dim

    def _block(self) -> AttentionBlock:
        return AttentionBlock(self.cfg.dim, self.cfg.heads, self.cfg.ffn_mult, self.cfg.dropout)

    def forward(self, fmri: Encoding, smri: Encoding) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """Shapes: fmri tokens (B, T_f, d_f) + embedding (B, d_f); smri tokens (B, T_s, d_s) +
        embedding (B, d_s).

        Returns: fused (B, out_dim); gate (B, G) | None; attention {fmri_to_smri (B, 1 + T_f, T_s)
        (or (B, 1, T_s) with the embedding query), smri_to_fmri (B, T_s, 1 + T_f)}.
        """
        attention: dict[str, Tensor] = {}
        if self.cfg.cross_attention:
            f_tokens, f_mask = self._fmri_tokens(fmri)
            s_tokens, s_mask = self.smri_proj(smri.tokens), smri.mask
            if self.fmri_position is not None:
                f_tokens = f_tokens + self.fmri_position
                s_tokens = s_tokens + self.smri_position
            f, s = masked_mean(f_tokens, f_mask), masked_mean(s_tokens, s_mask)
            if self.fmri_to_smri is not None:
                out, attention["fmri_to_smri"] = self.fmri_to_smri(f_tokens, s_tokens, s_mask)
                f = masked_mean(out, f_mask)
            if self.smri_to_fmri is not None:
                out, attention["smri_to_fmri"] = self.smri_to_fmri(s_tokens, f_tokens, f_mask)
                s = masked_mean(out, s_mask)
        else:
            f, s = self.fmri_proj(fmri.embedding), self.smri_proj(smri.embedding)

        if self.gate is not None:
            fused, gate = self.gate(f, s)
            return fused, gate, attention
        if self.cfg.combine == "concat":
            return torch.cat([f, s], dim=-1), None, attention
        return f, None, attention

    def _fmri_tokens(self, fmri: Encoding) -> tuple[Tensor, Tensor | None]:
        """(B, 1 + T_f, dim) = [embedding; tokens] projected (or (B, 1, dim)), with its mask."""
        summary = self.fmri_proj(fmri.embedding).unsqueeze(1)
        if self.cfg.fmri_query == "embedding":
            return summary, None
        tokens = torch.cat([summary, self.fmri_proj(fmri.tokens)], dim=1)
        if fmri.mask is None:
            return tokens, None
        real = torch.ones_like(fmri.mask[:, :1])
        return tokens, torch.cat([real, fmri.mask], dim=1)


class RegressionHead(nn.Module):
    """Linear -> ReLU -> Linear: (B, in_dim) -> (B,) (released code: 64 -> 32 -> 1).

    The output bias starts at 0, the training mean of a standardised target; ``zero`` also zeroes
    the output weights, so the head starts as the constant 0 (a residual correction)."""

    def __init__(self, in_dim: int, hidden: int, zero: bool = False) -> None:
        super().__init__()
        self.layers = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(in_dim, hidden)),
            ("act", nn.ReLU()),
            ("fc2", nn.Linear(hidden, 1)),
        ]))
        nn.init.zeros_(self.layers.fc2.bias)
        if zero:
            nn.init.zeros_(self.layers.fc2.weight)

    def forward(self, embedding: Tensor) -> Tensor:
        """Shapes: embedding (B, in_dim) -> prediction (B,)."""
        return self.layers(embedding).squeeze(-1)


class LateFusion(nn.Module):
    """The residual late-fusion path: w_f * p_f + w_s * p_s + b from the two branch predictions.

    ``fmri_head`` and ``structural_head`` are the single-branch models' heads (loaded from their
    pretrained runs); w starts at (0.5, 0.5) and b at 0: the average of the two branches."""

    def __init__(self, fmri_dim: int, structural_dim: int, hidden: int) -> None:
        super().__init__()
        self.fmri_head = RegressionHead(fmri_dim, hidden)
        self.structural_head = RegressionHead(structural_dim, hidden)
        self.weight = nn.Parameter(torch.full((2,), 0.5))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, f: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: f (B, d_f), s (B, d_s) branch embeddings -> (B,) prediction, (B, 2) branch predictions."""
        branches = torch.stack([self.fmri_head(f), self.structural_head(s)], dim=-1)
        return branches @ self.weight + self.bias, branches
