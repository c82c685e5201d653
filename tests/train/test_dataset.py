"""The PyG dataset: fields per modality, batch shapes, scaled targets, cached graphs, augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from amage_core.train.dataset import CohortDataset, input_spec, reseed, t1_augmentation
from amage_core.train.scaler import AgeScaler
from train_fixtures import N_ROI, N_TAB, T1_SHAPE


def _scaler(cohort, rows):
    p = cohort.participants.iloc[rows]
    return AgeScaler.fit(p["age"], p["participant_id"])


def test_batches_have_the_documented_shapes(cohort, graph_cfg):
    rows = np.arange(10)
    ds = CohortDataset(cohort, rows, graph_cfg, _scaler(cohort, rows), frozenset({"fmri", "smri", "table"}))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.x.shape == (4 * N_ROI, N_ROI) and batch.edge_index.shape[0] == 2
    assert batch.edge_attr.shape == (batch.edge_index.shape[1],)
    assert batch.t1.shape == (4, 1, *T1_SHAPE) and batch.tab.shape == (4, N_TAB)
    assert batch.idx.tolist() == [0, 1, 2, 3] and batch.y.shape == (4,)
    ages = cohort.participants["age"].to_numpy()
    expected = (ages[:4] - ages[:10].mean()) / ages[:10].std()     # standardised over the scaler's rows
    np.testing.assert_allclose(batch.y.numpy(), expected, rtol=1e-5)


def test_age_scalers_invert_and_read_their_records():
    ages = np.array([20.0, 35.0, 50.0, 80.0])
    for kind in ("standard", "minmax"):
        scaler = AgeScaler.fit(ages, ["a", "b", "c", "d"], kind)
        np.testing.assert_allclose(scaler.inverse(scaler.transform(ages)), ages)
        assert AgeScaler.from_dict(scaler.to_dict()) == scaler
    assert AgeScaler.fit(ages, list("abcd"), "minmax").transform(ages).tolist() == [0.0, 0.25, 0.5, 1.0]
    z = AgeScaler.fit(ages, list("abcd")).transform(ages)
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12
    old = AgeScaler.from_dict({"low": 20.0, "high": 80.0, "fitted_on": ["a"]})   # earlier runs' record
    assert old.kind == "minmax" and old.inverse(np.array([0.5]))[0] == 50.0


def test_items_hold_only_the_models_modalities(cohort, graph_cfg):
    rows = np.arange(6)
    ds = CohortDataset(cohort, rows, graph_cfg, _scaler(cohort, rows), frozenset({"table"}))
    item = ds[0]
    assert "tab" in item and "x" not in item and "t1" not in item


def test_graphs_are_built_once_and_shared(cohort, graph_cfg, monkeypatch):
    import amage_core.data.graph as graph

    calls = []
    real = graph.fc_to_graph
    monkeypatch.setattr(graph, "fc_to_graph", lambda fc, cfg: calls.append(1) or real(fc, cfg))
    cache: dict = {}
    rows = np.arange(8)
    a = CohortDataset(cohort, rows, graph_cfg, _scaler(cohort, rows), frozenset({"fmri"}), graph_cache=cache)
    b = CohortDataset(cohort, rows[:4], graph_cfg, _scaler(cohort, rows), frozenset({"fmri"}), graph_cache=cache)
    for _ in range(2):
        list(a), list(b)
    assert len(calls) == 8


def test_augmentation_is_seeded_by_epoch_and_row(cohort, graph_cfg):
    rows = np.arange(4)
    scaler = _scaler(cohort, rows)
    plain = CohortDataset(cohort, rows, graph_cfg, scaler, frozenset({"smri"}))
    aug = CohortDataset(cohort, rows, graph_cfg, scaler, frozenset({"smri"}), augment=True, seed=1)
    np.testing.assert_array_equal(plain[0].t1[0, 0].numpy(), cohort.t1[0])
    first = torch.stack([aug[i].t1 for i in range(4)])
    again = torch.stack([aug[i].t1 for i in range(4)])
    assert torch.equal(first, again)                     # same (seed, epoch, row): same draw
    aug.set_epoch(1)
    assert not torch.equal(first, torch.stack([aug[i].t1 for i in range(4)]))
    assert not torch.equal(first, torch.stack([plain[i].t1 for i in range(4)]))


def test_reseeding_in_place_draws_what_monai_set_random_state_draws():
    from monai.data import get_track_meta, set_track_meta

    ours, monais = t1_augmentation(T1_SHAPE), t1_augmentation(T1_SHAPE)
    volume = torch.rand(1, *T1_SHAPE)
    tracking = get_track_meta()
    set_track_meta(False)
    try:
        outputs = []
        for seed in [0, 1, 7, 2**32 + 5, *np.random.SeedSequence(3).generate_state(30)]:
            reseed(ours, seed)
            monais.set_random_state(seed=int(seed))
            a, b = ours(volume), monais(volume)
            assert torch.equal(a, b), seed
            outputs.append(a)
    finally:
        set_track_meta(tracking)
    assert not all(torch.equal(outputs[0], o) for o in outputs[1:])     # the seeds draw differently


def test_missing_modality_is_a_clear_error(cohort, graph_cfg):
    cohort.t1 = None
    with pytest.raises(ValueError, match="smri"):
        CohortDataset(cohort, np.arange(4), graph_cfg, _scaler(cohort, np.arange(4)), frozenset({"smri"}))


def test_input_spec_reads_networks_and_shapes(cohort):
    spec = input_spec(cohort)
    assert spec.n_roi == N_ROI and spec.t1_shape == T1_SHAPE and spec.n_table_features == N_TAB
    assert spec.network_index == [0] * 4 + [1] * 4
