"""Hierarchical graph attention encoder for the fMRI connectivity graph.

ROI level: ``roi_layers`` graph convolutions (PyG ``GATv2Conv``/``GATConv`` with the connectivity
weight as a 1-d edge feature, or ``GCNConv`` with |weight| as edge weight); heads are concatenated
except in the last layer, which averages ``final_heads`` heads; ELU + dropout after each.

Hierarchical (``GATConfig.hierarchical``):
  ROI tokens -> network level: one learned query per functional network attends to that network's
  ROIs only (the atlas labels, ``InputSpec.network_index``); without labels, ``n_learned_networks``
  queries attend to every ROI (a learned soft cluster assignment) -> network tokens (+ a learned
  network identity embedding) -> ``network_layers`` self-attention layers over the complete network
  graph -> brain level: a learned query attends to the network tokens (``readout="attention"``) or
  their mean is taken.
Flat: ROI tokens -> linear projection -> the same brain-level readout over ROIs.

``node_score`` adds the released code's sigmoid node score that re-weights ROI tokens.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GATv2Conv, GCNConv
from torch_geometric.utils import to_dense_batch

from amage_core.config import GATConfig
from amage_core.models.attention import AttentionBlock, AttentionPooling
from amage_core.models.spec import GraphEncoding, masked_mean


def network_membership(network_index: list[int] | None, n_roi: int) -> Tensor | None:
    """(K, R) bool, True where ROI r belongs to network k; ``None`` when there are no labels.

    Labelled networks come first in id order; unlabelled ROIs (-1) of a partly labelled atlas form
    one extra group.
    """
    if network_index is None:
        return None
    ids = np.asarray(network_index, dtype=np.int64)
    if ids.shape != (n_roi,):
        raise ValueError(f"network_index has {ids.size} entries for {n_roi} ROIs")
    labels = sorted(int(i) for i in np.unique(ids[ids >= 0]))
    if not labels:
        return None
    groups = labels + ([-1] if (ids < 0).any() else [])
    return torch.from_numpy(np.stack([ids == g for g in groups]))


class GraphEncoder(nn.Module):
    """fMRI connectivity graph -> network (or ROI) tokens + brain-level embedding."""

    def __init__(
        self, cfg: GATConfig, n_roi: int, node_features: int, network_index: list[int] | None = None
    ) -> None:
        super().__init__()
        if cfg.roi_layers < 1:
            raise ValueError(f"gat.roi_layers must be >= 1, got {cfg.roi_layers}")
        if cfg.out_dim % cfg.heads:
            raise ValueError(f"gat.out_dim ({cfg.out_dim}) must be divisible by gat.heads ({cfg.heads})")
        self.cfg = cfg
        self.n_roi = n_roi
        # node features standardised per (ROI, feature) with training statistics (set_input_statistics;
        # identity until set): (N_roi, F_node) each, saved with the weights
        self.register_buffer("input_mean", torch.zeros(n_roi, node_features))
        self.register_buffer("input_std", torch.ones(n_roi, node_features))
        self.roi_convs = nn.ModuleList()
        in_dim = node_features
        for i in range(cfg.roi_layers):
            last = i == cfg.roi_layers - 1
            heads = (cfg.final_heads or cfg.heads) if last else cfg.heads
            self.roi_convs.append(self._conv(in_dim, heads, concat=not last))
            in_dim = cfg.hidden if last else cfg.hidden * heads
        self.drop = nn.Dropout(cfg.dropout)
        self.node_score = nn.Linear(cfg.hidden, 1) if cfg.node_score else None

        if cfg.hierarchical:
            membership = network_membership(network_index, n_roi)
            self.register_buffer("membership", membership, persistent=False)
            n_networks = cfg.n_learned_networks if membership is None else membership.shape[0]
            self.network_pool = AttentionPooling(cfg.hidden, cfg.out_dim, cfg.heads, n_networks, cfg.dropout)
            self.network_embedding = nn.Parameter(torch.zeros(n_networks, cfg.out_dim))
            nn.init.normal_(self.network_embedding, std=cfg.out_dim ** -0.5)
            self.network_layers = nn.ModuleList(
                AttentionBlock(cfg.out_dim, cfg.heads, cfg.ffn_mult, cfg.dropout)
                for _ in range(cfg.network_layers)
            )
            self.n_tokens = n_networks
        else:
            self.roi_proj = nn.Linear(cfg.hidden, cfg.out_dim)
            self.n_tokens = n_roi
        self.readout = (
            AttentionPooling(cfg.out_dim, cfg.out_dim, cfg.heads, 1, cfg.dropout)
            if cfg.readout == "attention" else None
        )
        self.token_dim = cfg.out_dim
        self.embedding_dim = cfg.out_dim

    @torch.no_grad()
    def set_input_statistics(self, node_features: Tensor) -> None:
        """Standardise node features with the mean and SD over training participants.

        Shapes: node_features (P, N_roi, F_node), the training participants' node features (for FC
        rows: each edge z-scored, as a ridge on the connectome standardises every edge)."""
        if node_features.shape[1:] != self.input_mean.shape:
            raise ValueError(f"node features {tuple(node_features.shape[1:])} do not match the encoder's "
                             f"{tuple(self.input_mean.shape)}")
        x = node_features.to(self.input_mean)
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(x.std(0).clamp_min(1e-6))

    def _conv(self, in_dim: int, heads: int, concat: bool) -> nn.Module:
        cfg = self.cfg
        if cfg.conv == "gcn":
            width = cfg.hidden * heads if concat else cfg.hidden
            return GCNConv(in_dim, width, add_self_loops=False)
        conv_cls = GATv2Conv if cfg.conv == "gatv2" else GATConv
        return conv_cls(
            in_dim, cfg.hidden, heads=heads, concat=concat, dropout=cfg.dropout,
            add_self_loops=False, edge_dim=1 if cfg.use_edge_weight else None,
        )

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None, batch: Tensor, num_graphs: int
    ) -> GraphEncoding:
        """Shapes: x (sum_N, F_node), edge_index (2, E), edge_attr (E,), batch (sum_N,), with
        sum_N = B * N_roi.

        Returns a :class:`GraphEncoding`: tokens (B, K, d) network tokens (hierarchical) or
        (B, N_roi, d) ROI tokens (flat), embedding (B, d), node_scores (sum_N,), network_scores
        (B, K) | None, attention {network_pool (B, K, N_roi), network (B, K, K), readout (B, 1, T)},
        edge_attention of the last GAT layer.
        """
        if x.shape[0] != num_graphs * self.n_roi:
            raise ValueError(f"expected {self.n_roi} ROIs per graph, got {x.shape[0]} nodes for {num_graphs} graphs")
        x = ((x.view(num_graphs, self.n_roi, -1) - self.input_mean) / self.input_std).view_as(x)
        h, edge_attention = self._roi_layers(x, edge_index, edge_attr)
        scores = None
        if self.node_score is not None:
            scores = torch.sigmoid(self.node_score(h)).squeeze(-1)        # (sum_N,)
            h = h * scores.unsqueeze(-1)
        dense, node_mask = to_dense_batch(h, batch, batch_size=num_graphs, max_num_nodes=self.n_roi)

        attention: dict[str, Tensor] = {}
        if self.cfg.hierarchical:
            tokens, pool_weights = self.network_pool(dense, node_mask, self.membership)
            attention["network_pool"] = pool_weights                     # (B, K, N)
            tokens = tokens + self.network_embedding
            for layer in self.network_layers:
                tokens, attention["network"] = layer(tokens, tokens)      # (B, K, K)
            token_mask = None
        else:
            tokens, token_mask = self.roi_proj(dense), node_mask

        if self.readout is not None:
            embedding, readout = self.readout(tokens, token_mask)
            embedding = embedding.squeeze(1)
            attention["readout"] = readout                                # (B, 1, T)
        else:
            embedding = masked_mean(tokens, token_mask)
            valid = torch.ones(tokens.shape[:2], dtype=tokens.dtype, device=tokens.device)
            if token_mask is not None:
                valid = token_mask.to(tokens.dtype)
            readout = (valid / valid.sum(dim=1, keepdim=True)).unsqueeze(1)

        if self.cfg.hierarchical:
            network_scores = readout.squeeze(1)                           # (B, K)
            contribution = torch.bmm(readout, attention["network_pool"]).squeeze(1)   # (B, N)
        else:
            network_scores = None
            contribution = readout.squeeze(1)
        if scores is None:
            scores = contribution[node_mask]
        return GraphEncoding(
            tokens=tokens, embedding=embedding, mask=token_mask, node_scores=scores,
            network_scores=network_scores, attention=attention, edge_attention=edge_attention,
        )

    def _roi_layers(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """(sum_N, F_node) -> (sum_N, hidden), plus the last GAT layer's attention."""
        if self.cfg.use_edge_weight and edge_attr is None:
            raise ValueError("gat.use_edge_weight is set but the batch has no edge_attr")
        edge_attention = None
        h = x
        for conv in self.roi_convs:
            if self.cfg.conv == "gcn":
                weight = edge_attr.abs() if self.cfg.use_edge_weight else None
                h = conv(h, edge_index, weight)
            else:
                feature = edge_attr.unsqueeze(-1) if self.cfg.use_edge_weight else None
                h, edge_attention = conv(h, edge_index, edge_attr=feature, return_attention_weights=True)
            h = self.drop(F.elu(h))
        return h, edge_attention
