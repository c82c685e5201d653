"""What a model is built for (:class:`InputSpec`) and what it returns (:class:`ModelOutput`).

Encoders hand the fusion stage an :class:`Encoding` (a token set plus a pooled embedding); the graph
encoder's :class:`GraphEncoding` adds its interpretable weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class InputSpec:
    """The inputs of one cohort; ``None`` where the modality is absent.

    ``network_index``: (R,) functional-network id per region, -1 = unlabelled; ``None`` or all -1
    -> the graph encoder learns its own soft grouping of regions.
    """

    n_roi: int | None = None
    node_features: int | None = None
    network_index: list[int] | None = None
    t1_shape: tuple[int, int, int] | None = None
    n_table_features: int | None = None

    @property
    def modalities(self) -> frozenset[str]:
        """Modalities this spec describes, among ``{"fmri", "smri", "table"}``."""
        have = {
            "fmri": self.n_roi is not None and self.node_features is not None,
            "smri": self.t1_shape is not None,
            "table": self.n_table_features is not None,
        }
        return frozenset(name for name, present in have.items() if present)


@dataclass
class ModelOutput:
    """One forward pass.

    pred: (B,) predicted age, in the units of ``batch.y``.
    gate: (B, G) gate values in (0, 1), the weight on the fMRI representation (G = 1 for a scalar
        gate); ``None`` without a gate.
    attention: name -> (B, T_query, T_key) attention weights averaged over heads, each row summing
        to 1 in eval mode (attention dropout thins them while training): ``fmri_to_smri``, ``smri_to_fmri`` (cross-attention), ``network_pool`` (B, K, N_roi),
        ``network`` (B, K, K), ``readout`` (B, 1, K or N_roi).
    node_scores: (sum_N,) one score per ROI of the batch (``batch.batch`` order): the ROI's weight in
        the brain-level embedding (sums to 1 per graph), or its sigmoid node score (released code).
    network_scores: (B, K) weight of each network in the brain-level readout (hierarchical GAT).
    embedding: (B, d) the representation the regression head reads.
    edge_attention: last ROI layer's ``(edge_index (2, E'), alpha (E', H))`` (GAT only); alpha sums
        to 1 over each target node's incoming edges.
    branches: (B, 2) the fMRI and structural branch heads' predictions of a fusion model with the
        residual late-fusion path (``FusionConfig.late_fusion``); ``None`` otherwise.
    """

    pred: Tensor
    embedding: Tensor
    gate: Tensor | None = None
    attention: dict[str, Tensor] = field(default_factory=dict)
    node_scores: Tensor | None = None
    network_scores: Tensor | None = None
    edge_attention: tuple[Tensor, Tensor] | None = None
    branches: Tensor | None = None


@dataclass
class Encoding:
    """One modality encoded.

    tokens: (B, T, d) token set; mask: (B, T) True for real tokens (``None``: all real);
    embedding: (B, d) pooled representation.
    """

    tokens: Tensor
    embedding: Tensor
    mask: Tensor | None = None


@dataclass
class GraphEncoding(Encoding):
    """The graph encoder's output: tokens are network tokens (hierarchical) or ROI tokens (flat)."""

    node_scores: Tensor | None = None
    network_scores: Tensor | None = None
    attention: dict[str, Tensor] = field(default_factory=dict)
    edge_attention: tuple[Tensor, Tensor] | None = None


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over real tokens: (B, T, d), (B, T) -> (B, d)."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
