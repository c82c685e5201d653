"""Encoders: graph (hierarchical / flat / learned pooling), DenseNet, SFCN, table."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch_geometric.utils import scatter

from amage_core.config import DenseNetConfig, GATConfig, SFCNConfig, TableConfig
from amage_core.models.densenet import DenseNetEncoder
from amage_core.models.gat import GraphEncoder, network_membership
from amage_core.models.sfcn import SFCNEncoder
from amage_core.models.table import TableEncoder
from amage_core.models.tokens import MaxPool3d

from amage_core.models.testing import (
    TINY_NETWORKS as NETWORKS,
    TINY_T1_SHAPE as T1_SHAPE,
    TINY_TABLE_FEATURES as N_TABLE,
    tiny_config,
)

B = 4
N_ROI = len(NETWORKS)
NETWORKS = list(NETWORKS)


def _encode(cfg: GATConfig, batch, network_index=NETWORKS):
    encoder = GraphEncoder(cfg, N_ROI, N_ROI, network_index).eval()
    return encoder(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)


def test_hierarchical_encoder_pools_each_network_from_its_own_rois(batch):
    out = _encode(tiny_config().gat, batch)
    assert out.tokens.shape == (B, 3, 16) and out.embedding.shape == (B, 16)
    pool = out.attention["network_pool"]
    assert pool.shape == (B, 3, N_ROI)
    torch.testing.assert_close(pool.sum(-1), torch.ones(B, 3))
    outside = ~network_membership(NETWORKS, N_ROI)
    assert pool[:, outside].abs().max() == 0
    torch.testing.assert_close(out.attention["network"].sum(-1), torch.ones(B, 3))
    assert out.network_scores.shape == (B, 3)
    # the node score is the ROI's weight in the brain embedding: it sums to 1 per participant
    torch.testing.assert_close(scatter(out.node_scores, batch.batch, reduce="sum"), torch.ones(B))
    edge_index, alpha = out.edge_attention
    torch.testing.assert_close(scatter(alpha, edge_index[1], dim=0, reduce="sum"),
                               torch.ones(B * N_ROI, alpha.shape[1]))


@pytest.mark.parametrize("labels", [None, [-1] * N_ROI])
def test_learned_pooling_without_labels(batch, labels):
    cfg = tiny_config().gat
    out = _encode(cfg, batch, labels)
    assert out.tokens.shape == (B, cfg.n_learned_networks, 16)
    assert out.attention["network_pool"].gt(0).all()


def test_partly_labelled_atlas_gets_an_extra_group():
    membership = network_membership([0, 0, 1, -1, 1, -1], 6)
    assert membership.shape == (3, 6)
    assert membership[2].tolist() == [False, False, False, True, False, True]
    with pytest.raises(ValueError):
        network_membership([0, 1], 3)


@pytest.mark.parametrize("conv", ["gat", "gatv2", "gcn"])
def test_flat_encoder_reads_out_over_rois(batch, conv):
    cfg = replace(tiny_config().gat, hierarchical=False, conv=conv)
    out = _encode(cfg, batch)
    assert out.tokens.shape == (B, N_ROI, 16) and out.network_scores is None
    assert out.attention["readout"].shape == (B, 1, N_ROI)
    torch.testing.assert_close(scatter(out.node_scores, batch.batch, reduce="sum"), torch.ones(B))
    assert (out.edge_attention is None) == (conv == "gcn")


def test_released_structure_node_scores_are_sigmoids(batch):
    cfg = replace(tiny_config().gat, hierarchical=False, readout="mean", node_score=True,
                       roi_layers=3, final_heads=1, conv="gat", use_edge_weight=False)
    encoder = GraphEncoder(cfg, N_ROI, N_ROI, NETWORKS)
    assert [c.heads for c in encoder.roi_convs] == [2, 2, 1]
    out = encoder.eval()(batch.x, batch.edge_index, None, batch.batch, batch.num_graphs)
    assert out.node_scores.shape == (B * N_ROI,)
    assert ((out.node_scores > 0) & (out.node_scores < 1)).all()
    assert "readout" not in out.attention


def test_edge_weights_change_the_gat_output(batch):
    encoder = GraphEncoder(tiny_config().gat, N_ROI, N_ROI, NETWORKS).eval()
    args = (batch.x, batch.edge_index)
    a = encoder(*args, batch.edge_attr, batch.batch, batch.num_graphs).embedding
    b = encoder(*args, -batch.edge_attr, batch.batch, batch.num_graphs).embedding
    assert not torch.allclose(a, b)


def test_wrong_node_count_is_refused(batch):
    encoder = GraphEncoder(tiny_config().gat, N_ROI + 1, N_ROI, None)
    with pytest.raises(ValueError, match="ROIs per graph"):
        encoder(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)


def test_densenet_tokens_follow_the_output_grid():
    cfg = tiny_config().densenet
    encoder = DenseNetEncoder(cfg, T1_SHAPE)
    assert encoder.grid == (2, 2, 2) and encoder.n_tokens == 8
    assert set(dict(encoder.features.named_children())) >= {"conv0", "denseblock1", "transition1", "norm5"}
    out = encoder(torch.randn(3, 1, *T1_SHAPE))
    assert out.tokens.shape == (3, 8, 16) and out.embedding.shape == (3, 16)
    torch.testing.assert_close(out.embedding, out.tokens.mean(1))


def test_densenet_on_an_uneven_grid():
    assert DenseNetEncoder(DenseNetConfig(), (32, 40, 32)).grid == (2, 2, 2)
    with pytest.raises(ValueError, match="too small"):
        DenseNetEncoder(DenseNetConfig(block_config=(2, 2, 2, 2, 2)), (16, 16, 16))


def test_densenet_refuses_a_grid_its_stem_cannot_read():
    """Under 8 voxels per axis, the 7^3 stem's weight gradient reads uninitialised memory in oneDNN
    (NaN in 7 of 40 fits on a 6^3 grid): refused, naming the way out; the small stem reads it."""
    with pytest.raises(ValueError, match="too small for the DenseNet's 7\\^3 stem.*stem: small"):
        DenseNetEncoder(DenseNetConfig(block_config=(1,)), (6, 6, 6))
    DenseNetEncoder(DenseNetConfig(block_config=(1,), stem="small"), (6, 6, 6))


def test_checkpointing_gives_the_same_values_and_gradients():
    torch.manual_seed(0)
    plain = DenseNetEncoder(tiny_config().densenet, T1_SHAPE)
    checkpointed = DenseNetEncoder(replace(tiny_config().densenet, checkpointing=True), T1_SHAPE)
    checkpointed.load_state_dict(plain.state_dict())
    t1 = torch.randn(2, 1, *T1_SHAPE)
    grads = []
    for encoder in (plain, checkpointed):
        encoder.train()
        out = encoder(t1).embedding
        out.square().sum().backward()
        grads.append((out.detach(), encoder.features.conv0.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), (2, None, 0), ((3, 2, 3), (2, 1, 2), (1, 0, 1))])
def test_channels_last_max_pool_gives_nn_max_pool_values_and_gradients(kernel, stride, padding):
    torch.manual_seed(0)
    # ReLU'd feature maps: many tied zeros, as the pools meet them in the trunks
    x = torch.relu(torch.randn(2, 3, 7, 9, 8))
    ours, theirs = MaxPool3d(kernel, stride, padding), torch.nn.MaxPool3d(kernel, stride, padding)
    with torch.no_grad():
        fast = ours(x)
    assert fast.is_contiguous()
    assert torch.equal(fast, theirs(x))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = ours(a)
    assert out.is_contiguous() and out.grad_fn is not None
    weights = torch.randn_like(fast)
    (out * weights).sum().backward()
    (theirs(b) * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)


def test_image_trunks_pool_with_the_fast_max_pool():
    densenet = DenseNetEncoder(DenseNetConfig(), T1_SHAPE)
    sfcn = SFCNEncoder(SFCNConfig(channels=(4, 8, 8)), T1_SHAPE)
    assert isinstance(densenet.features.pool0, MaxPool3d)
    pools = [m for m in sfcn.modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert pools and all(isinstance(m, MaxPool3d) for m in pools)


def test_sfcn_blocks_follow_peng_et_al():
    encoder = SFCNEncoder(SFCNConfig(channels=(4, 8, 16), out_dim=8), T1_SHAPE)
    assert encoder.grid == (4, 4, 4)
    last = encoder.features.block3
    assert last.conv.kernel_size == (1, 1, 1) and not hasattr(last, "pool")
    assert isinstance(encoder.features.block1.pool, torch.nn.MaxPool3d)
    out = encoder(torch.randn(2, 1, *T1_SHAPE))
    assert out.tokens.shape == (2, 64, 8)


def test_table_encoder_is_scale_free_and_handles_one_participant():
    encoder = TableEncoder(TableConfig(out_dim=8, hidden=16), N_TABLE)
    tab = torch.rand(5, N_TABLE) * torch.logspace(0, 3, N_TABLE)
    out = encoder.train()(tab)
    assert out.tokens.shape == (5, N_TABLE, 8) and out.embedding.shape == (5, 8)
    assert encoder.train()(tab[:1]).tokens.isfinite().all()
    encoder.eval()
    a, b = encoder(tab[:2]).embedding, encoder(tab[:2] + 1e-3).embedding
    assert not torch.allclose(a, b)
