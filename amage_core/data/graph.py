"""Connectivity matrix -> graph for the fMRI branch (node features, sparse edges, edge weights).

One participant's connectivity matrix ``fc`` (R, R) becomes:

- node features ``x`` (R, R): the connectivity rows with the diagonal set to 0 (the released code's
  choice: each region described by its connectivity profile);
- edges ``edge_index`` (2, E): chosen by :class:`~amage_core.config.GraphConfig` ``sparsify``
  (``topk``: each region's k strongest |weights|, made symmetric; ``proportional``: the strongest
  fraction ``density`` of region pairs; ``positive``: every positive weight, as the released code;
  ``none``: every pair), plus self-loops when ``self_loops``;
- edge weights ``edge_weight`` (E,): the signed connectivity values (``self_loop_weight`` on loops).

Edges are listed sorted by (source, target); the edge set is symmetric for every rule.
:func:`participant_data` wraps the arrays in the ``torch_geometric.data.Data`` layout the models read.
"""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from amage_core.config import GraphConfig


def fc_to_graph(fc: np.ndarray, cfg: GraphConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparsify one connectivity matrix.

    Args:
        fc: (R, R) connectivity (e.g. Fisher z); the diagonal is ignored.
        cfg: the sparsification rule.

    Returns:
        ``x`` (R, R) float32, ``edge_index`` (2, E) int64, ``edge_weight`` (E,) float32.
    """
    fc = np.asarray(fc, dtype=np.float64)
    if fc.ndim != 2 or fc.shape[0] != fc.shape[1]:
        raise ValueError(f"connectivity must be a square (R, R) matrix, got shape {fc.shape}")
    weights = fc.copy()
    np.fill_diagonal(weights, 0.0)
    if not np.isfinite(weights).all():
        raise ValueError("connectivity has non-finite off-diagonal values (NaN/inf)")
    keep = _edge_mask(weights, cfg)
    np.fill_diagonal(keep, cfg.self_loops)
    src, dst = np.nonzero(keep)
    edge_weight = weights[src, dst]
    edge_weight[src == dst] = cfg.self_loop_weight
    return (
        weights.astype(np.float32),
        np.stack([src, dst]).astype(np.int64),
        edge_weight.astype(np.float32),
    )


def _edge_mask(weights: np.ndarray, cfg: GraphConfig) -> np.ndarray:
    """(R, R) symmetric boolean mask of the kept off-diagonal edges."""
    n = weights.shape[0]
    strength = np.abs(weights)
    off_diagonal = ~np.eye(n, dtype=bool)
    if cfg.sparsify == "none":
        return off_diagonal
    if cfg.sparsify == "positive":
        return (weights > 0) & off_diagonal
    if cfg.sparsify == "topk":
        if cfg.topk < 1:
            raise ValueError(f"graph.topk must be >= 1, got {cfg.topk}")
        k = min(cfg.topk, n - 1)
        ranked = np.where(off_diagonal, strength, -np.inf)
        order = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
        keep = np.zeros((n, n), dtype=bool)
        np.put_along_axis(keep, order, True, axis=1)
        return keep | keep.T
    if cfg.sparsify == "proportional":
        if not 0.0 < cfg.density <= 1.0:
            raise ValueError(f"graph.density must be in (0, 1], got {cfg.density}")
        rows, cols = np.triu_indices(n, k=1)
        n_keep = max(1, int(round(cfg.density * rows.size)))
        order = np.argsort(-strength[rows, cols], kind="stable")[:n_keep]
        keep = np.zeros((n, n), dtype=bool)
        keep[rows[order], cols[order]] = True
        return keep | keep.T
    raise ValueError(f"unknown graph.sparsify {cfg.sparsify!r}")


def participant_data(
    *,
    y: float,
    idx: int,
    graph: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    t1: np.ndarray | None = None,
    tab: np.ndarray | None = None,
) -> Data:
    """One participant as the ``Data`` object the models read (any subset of modalities).

    Args:
        y: the (scaled) age.
        idx: the participant's row index in the cohort.
        graph: ``fc_to_graph`` output -> ``x`` (R, F), ``edge_index`` (2, E), ``edge_attr`` (E,).
        t1: (D, H, W) volume -> ``t1`` (1, 1, D, H, W), batched to (B, 1, D, H, W).
        tab: (F_tab,) structural measures -> ``tab`` (1, F_tab), batched to (B, F_tab).
    """
    fields: dict[str, torch.Tensor] = {
        "y": torch.tensor([y], dtype=torch.float32),
        "idx": torch.tensor([idx], dtype=torch.int64),
    }
    if graph is not None:
        x, edge_index, edge_weight = graph
        fields["x"] = torch.as_tensor(np.asarray(x, dtype=np.float32))
        fields["edge_index"] = torch.as_tensor(np.asarray(edge_index, dtype=np.int64))
        fields["edge_attr"] = torch.as_tensor(np.asarray(edge_weight, dtype=np.float32))
    if t1 is not None:
        fields["t1"] = torch.as_tensor(np.asarray(t1, dtype=np.float32))[None, None]
    if tab is not None:
        fields["tab"] = torch.as_tensor(np.asarray(tab, dtype=np.float32))[None]
    data = Data(**fields)
    if graph is None:
        data.num_nodes = 0      # no graph: keeps PyG from guessing a node count from other fields
    return data
