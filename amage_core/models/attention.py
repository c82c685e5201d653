"""Attention building blocks shared by the graph encoder and the fusion stage.

- :class:`AttentionBlock`: query tokens attend to key tokens (``nn.MultiheadAttention``), then
  residual + LayerNorm, feed-forward, residual + LayerNorm: the released code's
  ``CrossAttentionBlock``. With query = key it is a self-attention (transformer encoder) layer.
- :class:`AttentionPooling`: learned query tokens attend to a token set (pooling by multi-head
  attention), optionally restricted by a (queries x keys) membership mask.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn


class AttentionBlock(nn.Module):
    """Multi-head attention + residual/LayerNorm + FFN + residual/LayerNorm (post-norm)."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(dim, dim * ffn_mult)),
            ("act", nn.ReLU()),
            ("drop", nn.Dropout(dropout)),
            ("fc2", nn.Linear(dim * ffn_mult, dim)),
        ]))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Shapes: query (B, T_q, d), key (B, T_k, d), key_mask (B, T_k) True = real token.

        Returns: tokens (B, T_q, d), weights (B, T_q, T_k) averaged over heads (rows sum to 1).
        """
        padding = None if key_mask is None else ~key_mask
        attended, weights = self.attn(query, key, key, key_padding_mask=padding, need_weights=True)
        x = self.norm1(query + self.drop(attended))
        return self.norm2(x + self.drop(self.ffn(x))), weights


class AttentionPooling(nn.Module):
    """``n_queries`` learned queries attend to a token set: (B, N, d_in) -> (B, n_queries, d)."""

    def __init__(self, in_dim: int, dim: int, heads: int, n_queries: int, dropout: float) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.empty(n_queries, dim))
        nn.init.normal_(self.queries, std=dim ** -0.5)
        self.attn = nn.MultiheadAttention(
            dim, heads, dropout=dropout, kdim=in_dim, vdim=in_dim, batch_first=True
        )

    def forward(
        self, tokens: Tensor, mask: Tensor | None = None, allowed: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Shapes: tokens (B, N, d_in); mask (B, N) True = real token; allowed (Q, N) True where
        query q may attend to token n (every row needs one allowed real token).

        Returns: pooled (B, Q, d), weights (B, Q, N) averaged over heads (rows sum to 1).
        """
        query = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        padding = None if mask is None else ~mask
        blocked = None if allowed is None else ~allowed
        return self.attn(
            query, tokens, tokens, key_padding_mask=padding, attn_mask=blocked, need_weights=True
        )
