"""Connectivity -> graph (amage_core.data.graph)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

from amage_core.config import GraphConfig
from amage_core.data.graph import fc_to_graph, participant_data


def _fc(n: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n))
    fc = (a + a.T) / 2
    np.fill_diagonal(fc, 0.0)
    return fc


def _adjacency(edge_index: np.ndarray, n: int) -> np.ndarray:
    adj = np.zeros((n, n), dtype=bool)
    adj[edge_index[0], edge_index[1]] = True
    return adj


def test_node_features_are_rows_with_zero_diagonal():
    fc = _fc(7)
    fc[np.diag_indices(7)] = 5.0
    x, _, _ = fc_to_graph(fc, GraphConfig())
    assert x.dtype == np.float32 and x.shape == (7, 7)
    assert np.all(np.diag(x) == 0)
    off = ~np.eye(7, dtype=bool)
    np.testing.assert_allclose(x[off], fc[off], rtol=1e-6)


def test_topk_keeps_each_nodes_strongest_neighbours():
    fc = _fc(10)
    x, edge_index, weight = fc_to_graph(fc, GraphConfig(sparsify="topk", topk=3, self_loops=False))
    adj = _adjacency(edge_index, 10)
    strength = np.abs(fc) + np.diag(np.full(10, -np.inf))
    for i in range(10):
        strongest = np.argsort(-strength[i])[:3]
        assert adj[i, strongest].all()
        assert adj[i].sum() >= 3
    assert (adj == adj.T).all()
    assert edge_index.dtype == np.int64 and weight.dtype == np.float32
    np.testing.assert_allclose(weight, fc[edge_index[0], edge_index[1]], rtol=1e-6)


def test_proportional_keeps_the_density_fraction_of_pairs():
    fc = _fc(20)
    _, edge_index, weight = fc_to_graph(fc, GraphConfig(sparsify="proportional", density=0.1, self_loops=False))
    n_pairs = 20 * 19 // 2
    assert edge_index.shape[1] == 2 * round(0.1 * n_pairs)
    threshold = np.abs(weight).min()
    kept = _adjacency(edge_index, 20)
    dropped = ~kept & ~np.eye(20, dtype=bool)
    assert np.abs(fc[dropped]).max() <= threshold


def test_positive_and_none_rules():
    fc = _fc(8)
    _, edge_index, weight = fc_to_graph(fc, GraphConfig(sparsify="positive", self_loops=False))
    assert (weight > 0).all()
    assert edge_index.shape[1] == int((fc[~np.eye(8, dtype=bool)] > 0).sum())
    _, edge_index, _ = fc_to_graph(fc, GraphConfig(sparsify="none", self_loops=False))
    assert edge_index.shape[1] == 8 * 7


def test_self_loops_get_their_configured_weight():
    _, edge_index, weight = fc_to_graph(_fc(6), GraphConfig(topk=2, self_loops=True, self_loop_weight=0.5))
    loops = edge_index[0] == edge_index[1]
    assert loops.sum() == 6
    assert np.all(weight[loops] == 0.5)


@pytest.mark.parametrize("bad", [np.zeros((3, 4)), np.full((3, 3), np.nan)])
def test_bad_matrices_are_refused(bad):
    with pytest.raises(ValueError):
        fc_to_graph(bad, GraphConfig())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 15), k=st.integers(1, 20), seed=st.integers(0, 10_000),
       rule=st.sampled_from(["topk", "proportional", "positive", "none"]))
def test_every_rule_gives_a_symmetric_sorted_graph(n, k, seed, rule):
    cfg = GraphConfig(sparsify=rule, topk=k, density=0.3)
    x, edge_index, weight = fc_to_graph(_fc(n, seed), cfg)
    adj = _adjacency(edge_index, n)
    assert (adj == adj.T).all()
    assert np.all(np.diag(adj))
    keys = edge_index[0] * n + edge_index[1]
    assert np.all(np.diff(keys) > 0)
    assert weight.shape == (edge_index.shape[1],)


def test_participant_data_batches_into_the_model_layout():
    graph = fc_to_graph(_fc(5), GraphConfig(topk=2))
    items = [participant_data(y=0.5, idx=i, graph=graph, t1=np.zeros((4, 5, 6)), tab=np.ones(3)) for i in range(2)]
    batch = Batch.from_data_list(items)
    assert batch.x.shape == (10, 5)
    assert batch.edge_attr.shape == (2 * graph[1].shape[1],)
    assert batch.t1.shape == (2, 1, 4, 5, 6)
    assert batch.tab.shape == (2, 3)
    assert batch.y.shape == (2,) and batch.idx.tolist() == [0, 1]
    no_graph = Batch.from_data_list([participant_data(y=0.1, idx=i, t1=np.zeros((4, 5, 6))) for i in range(3)])
    assert no_graph.num_graphs == 3 and no_graph.t1.shape == (3, 1, 4, 5, 6)
