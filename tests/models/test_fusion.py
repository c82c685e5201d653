"""Cross-attention, gated fusion and the regression head."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from amage_core.config import FusionConfig
from amage_core.models.fusion import Fusion, GatedFusion, RegressionHead
from amage_core.models.spec import Encoding

B, T_F, T_S, D = 3, 4, 5, 8


def _inputs(fmri_mask: bool = False) -> tuple[Encoding, Encoding]:
    mask = None
    if fmri_mask:
        mask = torch.ones(B, T_F, dtype=torch.bool)
        mask[0, -2:] = False
    fmri = Encoding(tokens=torch.randn(B, T_F, D), embedding=torch.randn(B, D), mask=mask)
    smri = Encoding(tokens=torch.randn(B, T_S, 6), embedding=torch.randn(B, 6))
    return fmri, smri


def _fusion(**changes) -> Fusion:
    cfg = replace(FusionConfig(dim=D, heads=2), **changes)
    return Fusion(cfg, D, T_F, 6, T_S).eval()


@pytest.mark.parametrize("direction", ["fmri-to-smri", "smri-to-fmri", "both"])
def test_cross_attention_rows_sum_to_one(direction):
    fused, gate, attention = _fusion(direction=direction)(*_inputs())
    assert fused.shape == (B, D)
    expected = {"fmri-to-smri": {"fmri_to_smri"}, "smri-to-fmri": {"smri_to_fmri"},
                "both": {"fmri_to_smri", "smri_to_fmri"}}[direction]
    assert set(attention) == expected
    if "fmri_to_smri" in attention:
        assert attention["fmri_to_smri"].shape == (B, 1 + T_F, T_S)
    if "smri_to_fmri" in attention:
        assert attention["smri_to_fmri"].shape == (B, T_S, 1 + T_F)
    for weights in attention.values():
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))


def test_masked_fmri_tokens_get_no_attention_and_do_not_change_the_output():
    fusion = _fusion(direction="smri-to-fmri")
    fmri, smri = _inputs(fmri_mask=True)
    fused, _, attention = fusion(fmri, smri)
    assert attention["smri_to_fmri"][0, :, -2:].abs().max() == 0
    fmri.tokens[0, -2:] = 1e3             # padded tokens: any content, same result
    torch.testing.assert_close(fusion(fmri, smri)[0], fused)


@pytest.mark.parametrize("kind, width", [("vector", D), ("scalar", 1)])
def test_gate_is_in_the_unit_interval_and_mixes_convexly(kind, width):
    gated = GatedFusion(D, kind)
    f, s = torch.randn(B, D) * 10, torch.randn(B, D) * 10
    fused, gate = gated(f, s)
    assert gate.shape == (B, width)
    assert ((gate > 0) & (gate < 1)).all()
    lower, upper = torch.minimum(f, s), torch.maximum(f, s)
    assert ((fused >= lower - 1e-5) & (fused <= upper + 1e-5)).all()


def test_combine_modes():
    fmri, smri = _inputs()
    fused, gate, _ = _fusion(combine="concat")(fmri, smri)
    assert fused.shape == (B, 2 * D) and gate is None
    fused, gate, attention = _fusion(cross_attention=False)(fmri, smri)
    assert fused.shape == (B, D) and gate.shape == (B, D) and attention == {}
    query = _fusion(combine="query", direction="fmri-to-smri", fmri_query="embedding")
    fused, gate, attention = query(fmri, smri)
    assert attention["fmri_to_smri"].shape == (B, 1, T_S) and gate is None
    with pytest.raises(ValueError, match="query"):
        _fusion(combine="query", direction="smri-to-fmri")
    with pytest.raises(ValueError, match="divisible"):
        _fusion(heads=3)


def test_regression_head_gives_one_value_per_participant():
    head = RegressionHead(D, 4)
    assert head(torch.randn(B, D)).shape == (B,)
    assert list(dict(head.layers.named_children())) == ["fc1", "act", "fc2"]
