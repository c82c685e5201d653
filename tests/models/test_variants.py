"""Every variant: shapes, gradients, determinism, bf16, mixed sparsity, errors, profiles."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from amage_core.config import GraphConfig, load_profile
from amage_core.models import VARIANTS, InputSpec, build_model, count_parameters, resolve_config
from amage_core.models.testing import random_batch, synthetic_participants, tiny_config

EXPECTED_VARIANTS = {"amagenet", "released-code", "fmri", "smri", "sfcn", "tabular", "gcn",
                     "flat-gat", "no-gate", "no-xattn", "concat"}
MODALITIES = {"fmri": {"fmri"}, "smri": {"smri"}, "sfcn": {"smri"}, "tabular": {"table"}}
GATED = {"amagenet", "gcn", "flat-gat", "no-xattn"}


def test_variant_names_match_the_contract():
    assert set(VARIANTS) == EXPECTED_VARIANTS
    assert all(isinstance(d, str) and d for d in VARIANTS.values())


@pytest.mark.parametrize("variant", sorted(EXPECTED_VARIANTS))
def test_forward_shapes_and_gradients(variant, spec, batch):
    model = build_model(tiny_config(variant), spec)
    assert model.modalities == frozenset(MODALITIES.get(variant, {"fmri", "smri"}))
    out = model(batch)
    assert out.pred.shape == (4,) and out.embedding.shape[0] == 4
    if variant in GATED:
        assert out.gate.shape == (4, 16) and ((out.gate > 0) & (out.gate < 1)).all()
    else:
        assert out.gate is None
    if "fmri" in model.modalities:
        assert out.node_scores.shape == (batch.num_nodes,)
    (out.pred - batch.y).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (unused): {missing}"
    for name, branch in model.named_children():
        if name.endswith("encoder") and branch is not None:
            assert sum(p.grad.abs().sum() for p in branch.parameters()) > 0, name
    with torch.no_grad():
        attention = model.eval()(batch).attention      # training-mode dropout thins the weights
    for weights in attention.values():
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))


@pytest.mark.parametrize("variant", ["amagenet", "released-code", "no-gate", "tabular", "sfcn"])
def test_eval_mode_is_deterministic(variant, spec, batch):
    model = build_model(tiny_config(variant), spec)
    model.train()
    model(batch)                          # move BatchNorm statistics away from their init
    model.eval()
    with torch.no_grad():
        first, second = model(batch), model(batch)
    torch.testing.assert_close(first.pred, second.pred, rtol=0, atol=0)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(batch).embedding, model(batch).embedding), "dropout is on in training"


def test_table_branch_replaces_the_image_branch(spec, batch):
    model = build_model(tiny_config("amagenet", smri_encoder="table"), spec)
    assert model.modalities == frozenset({"fmri", "table"})
    assert model.smri_encoder is None and model.table_encoder is not None
    out = model(batch)
    assert out.attention["fmri_to_smri"].shape == (4, 1 + 3, spec.n_table_features)


def test_batches_mixing_graph_sparsity_match_single_participants(spec):
    rules = [GraphConfig(topk=2), GraphConfig(sparsify="none"), GraphConfig(sparsify="proportional", density=0.3),
             GraphConfig(sparsify="positive", self_loops=False)]
    items = [synthetic_participants(spec, 1, seed=i, graph=rule)[0] for i, rule in enumerate(rules)]
    batch = Batch.from_data_list(items)
    assert len({item.edge_index.shape[1] for item in items}) == len(items)
    for variant in ("amagenet", "flat-gat", "released-code"):
        model = build_model(tiny_config(variant), spec).eval()
        with torch.no_grad():
            together = model(batch)
            alone = torch.cat([model(Batch.from_data_list([item])).pred for item in items])
            scores = torch.cat([model(Batch.from_data_list([item])).node_scores for item in items])
        torch.testing.assert_close(together.pred, alone, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(together.node_scores, scores, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ["amagenet", "released-code", "sfcn", "tabular"])
def test_bf16_autocast_forward_on_cpu(variant, spec, batch):
    model = build_model(tiny_config(variant), spec).eval()
    with torch.no_grad():
        reference = model(batch).pred
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch)
    assert out.pred.shape == (4,) and out.pred.float().isfinite().all()
    assert (out.pred.float() - reference).abs().max() < 0.1 * reference.abs().max() + 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_forward_backward_and_bf16(spec, batch):
    model = build_model(tiny_config("amagenet"), spec).cuda()
    batch = batch.to("cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(batch)
    out.pred.float().sum().backward()
    assert out.pred.is_cuda and out.pred.float().isfinite().all()


def test_unknown_variant_and_missing_modalities_are_clear_errors(spec):
    with pytest.raises(ValueError, match="unknown model variant"):
        build_model(tiny_config("transformer"), spec)
    no_t1 = InputSpec(n_roi=12, node_features=12, n_table_features=6)
    with pytest.raises(ValueError, match="t1_shape"):
        build_model(tiny_config("amagenet"), no_t1)
    with pytest.raises(ValueError, match="n_roi"):
        build_model(tiny_config("fmri"), InputSpec(t1_shape=(16, 16, 16)))
    assert build_model(tiny_config("amagenet", smri_encoder="table"), no_t1).modalities == {"fmri", "table"}


def test_variants_override_only_structure():
    cfg = tiny_config("released-code")
    resolved = resolve_config(cfg)
    assert resolved.gat.hidden == cfg.gat.hidden and resolved.fusion.dim == cfg.fusion.dim
    assert resolved.gat.roi_layers == 3 and resolved.fusion.combine == "query"
    assert resolve_config(tiny_config("smri", smri_encoder="table")).smri_encoder == "densenet"


@pytest.mark.parametrize("variant", sorted(EXPECTED_VARIANTS))
def test_model_settings_keep_what_the_variant_builds_from(variant, spec):
    from amage_core.config import from_dict, replace
    from amage_core.models.amagenet import model_parts, model_settings

    cfg = tiny_config(variant)
    settings = model_settings(cfg)
    assert ("gat" in settings) == ("fmri" in model_parts(cfg))
    assert ("fusion" in settings) == ("fusion" in model_parts(cfg))
    assert len({"densenet", "sfcn", "table"} & set(settings)) == int(bool(model_parts(cfg) & {"smri", "table"}))
    # a model built from the kept settings is the same model (a run rebuilds its folds from them)
    shapes = {k: v.shape for k, v in build_model(cfg, spec).state_dict().items()}
    rebuilt = build_model(from_dict(type(cfg), settings), spec).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == shapes
    # a section the variant does not read changes nothing; one it reads does
    parts = model_parts(cfg)
    gat = model_settings(replace(cfg, gat={"hidden": cfg.gat.hidden * 2}))
    densenet = model_settings(replace(cfg, densenet={"growth_rate": cfg.densenet.growth_rate * 2}))
    assert (gat != settings) == ("fmri" in parts)
    assert (densenet != settings) == ("smri" in parts and resolve_config(cfg).smri_encoder == "densenet")


def test_parameter_counts_per_submodule(spec):
    model = build_model(tiny_config("amagenet"), spec)
    counts = count_parameters(model)
    assert set(counts) == {"fmri_encoder", "smri_encoder", "fusion", "late", "head", "total"}
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_state_dict_keys_are_named():
    model = build_model(tiny_config("amagenet"), InputSpec(n_roi=12, node_features=12, t1_shape=(16, 16, 16)))
    keys = set(model.state_dict())
    for key in ("smri_encoder.features.conv0.weight", "smri_encoder.features.denseblock1.denselayer1.layers.conv1.weight",
                "fmri_encoder.roi_convs.0.att", "fusion.gate.gate.fc1.weight", "head.layers.fc2.bias",
                "late.fmri_head.layers.fc2.weight", "late.weight", "fmri_encoder.input_mean"):
        assert key in keys, key


@pytest.mark.parametrize("profile, n_roi", [("demo", 160), ("paper", 300)])
def test_profile_model_sections_build(profile, n_roi):
    p = load_profile(profile)
    spec = InputSpec(n_roi=n_roi, node_features=n_roi, network_index=[i % 7 for i in range(n_roi)],
                     t1_shape=p.prep.t1_shape)
    for variant in ("amagenet", "released-code"):
        p.model.variant = variant
        counts = count_parameters(build_model(p.model, spec))
        assert counts["total"] > 0
    if profile == "paper":
        assert p.model.densenet.checkpointing


def test_a_fusion_model_starts_as_the_average_of_its_branches():
    """With the residual late-fusion path, the fused head starts at 0: the first prediction is
    0.5 * fMRI head + 0.5 * structural head."""
    torch.manual_seed(0)
    spec = InputSpec(n_roi=12, node_features=12, t1_shape=(16, 16, 16))
    model = build_model(tiny_config("amagenet"), spec).eval()
    batch = random_batch(spec, 4, seed=0)
    out = model(batch)
    assert out.branches.shape == (batch.num_graphs, 2)
    torch.testing.assert_close(out.pred, out.branches.mean(-1))


def test_frozen_branches_stay_in_eval_mode_and_untrained():
    torch.manual_seed(0)
    spec = InputSpec(n_roi=12, node_features=12, t1_shape=(16, 16, 16))
    fused = build_model(tiny_config("amagenet"), spec)
    fmri = build_model(tiny_config("fmri"), spec)
    smri = build_model(tiny_config("smri"), spec)
    fused.load_branches({"fmri": fmri.state_dict(), "structural": smri.state_dict()}, "frozen")
    fused.train()
    assert not fused.fmri_encoder.training and not fused.smri_encoder.training and fused.fusion.training
    trainable = {n.split(".")[0] for n, p in fused.named_parameters() if p.requires_grad}
    assert trainable == {"fusion", "head", "late"}
    assert not any(p.requires_grad for p in fused.late.fmri_head.parameters())
