"""AMAge-Net and its variants, assembled from a :class:`~amage_core.config.ModelConfig`.

Each variant is the profile's ``ModelConfig`` plus a fixed set of overrides (:func:`resolve_config`,
applied on top of the profile, so layer sizes always come from the profile) and the branches it
uses. ``VARIANTS`` lists them with one line each.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from amage_core.config import ModelConfig, replace
from amage_core.models.densenet import DenseNetEncoder
from amage_core.models.fusion import Fusion, LateFusion, RegressionHead
from amage_core.models.gat import GraphEncoder
from amage_core.models.sfcn import SFCNEncoder
from amage_core.models.spec import Encoding, GraphEncoding, InputSpec, ModelOutput
from amage_core.models.table import TableEncoder


@dataclass(frozen=True)
class Variant:
    description: str
    fmri: bool = True                  # uses the fMRI graph branch
    structural: bool = True            # uses the structural branch (T1 image or table)
    overrides: dict[str, Any] = field(default_factory=dict)   # applied to the ModelConfig


_RELEASED_GAT = {
    "hierarchical": False, "conv": "gat", "roi_layers": 3, "final_heads": 1,
    "readout": "mean", "node_score": True, "use_edge_weight": False,
}
_RELEASED_FUSION = {
    "cross_attention": True, "direction": "fmri-to-smri", "fmri_query": "embedding",
    "combine": "query", "position_embedding": False, "late_fusion": False,
}

_VARIANTS: dict[str, Variant] = {
    "amagenet": Variant(
        "AMAge-Net: hierarchical GAT + sMRI encoder (model.smri_encoder), cross-attention, gated fusion"),
    "released-code": Variant(
        "the authors' released model: flat 3-layer GAT (node scores, mean pool), one fMRI query token "
        "over the sMRI tokens, no gate (use graph.sparsify=positive for their graphs)",
        overrides={"gat": _RELEASED_GAT, "fusion": _RELEASED_FUSION}),
    "fmri": Variant("fMRI only: hierarchical GAT + regression head", structural=False),
    "smri": Variant("sMRI only: 3D DenseNet + regression head", fmri=False,
                    overrides={"smri_encoder": "densenet"}),
    "sfcn": Variant("sMRI only: SFCN (Peng et al. 2021) + regression head", fmri=False,
                    overrides={"smri_encoder": "sfcn"}),
    "tabular": Variant("structural table only: per-feature tokens + regression head", fmri=False,
                       overrides={"smri_encoder": "table"}),
    "gcn": Variant("AMAge-Net with GCN instead of GAT layers at the ROI level",
                   overrides={"gat": {"conv": "gcn"}}),
    "flat-gat": Variant("AMAge-Net without the hierarchy: ROI-level GAT + attention readout over ROIs",
                        overrides={"gat": {"hierarchical": False}}),
    "no-gate": Variant("AMAge-Net without the gate: concatenation after cross-attention",
                       overrides={"fusion": {"combine": "concat"}}),
    "no-xattn": Variant("AMAge-Net without cross-attention: the gate mixes the pooled embeddings",
                        overrides={"fusion": {"cross_attention": False, "combine": "gate"}}),
    "concat": Variant("plain fusion: concatenation of the pooled embeddings, no attention, no gate",
                      overrides={"fusion": {"cross_attention": False, "combine": "concat"}}),
}

VARIANTS: dict[str, str] = {name: v.description for name, v in _VARIANTS.items()}


def _variant(cfg: ModelConfig) -> Variant:
    if cfg.variant not in _VARIANTS:
        raise ValueError(f"unknown model variant {cfg.variant!r}; known: {sorted(_VARIANTS)}")
    return _VARIANTS[cfg.variant]


def is_fusion(cfg: ModelConfig) -> bool:
    """Whether ``cfg.variant`` fuses both branches (fMRI and a structural encoder)."""
    variant = _variant(cfg)
    return variant.fmri and variant.structural


# the single-branch variant that pretrains a fusion model's structural encoder, and its config section
_STRUCTURAL_BRANCH = {"densenet": ("smri", "densenet"), "sfcn": ("sfcn", "sfcn"), "table": ("tabular", "table")}


def branch_variants(cfg: ModelConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """The single-branch models a fusion variant starts from: ``{"fmri": (variant, overrides),
    "structural": (variant, overrides)}``, the overrides carrying the fusion variant's own encoder
    settings (e.g. the released code's flat GAT), so each branch is the same encoder trained alone."""
    from amage_core.config import to_dict

    resolved = resolve_config(cfg)
    structural, section = _STRUCTURAL_BRANCH[resolved.smri_encoder]
    return {"fmri": ("fmri", {"gat": to_dict(resolved.gat)}),
            "structural": (structural, {section: to_dict(getattr(resolved, section))})}


def resolve_config(cfg: ModelConfig) -> ModelConfig:
    """The configuration a variant actually runs with (the profile + the variant's overrides)."""
    return replace(cfg, **_variant(cfg).overrides)


def model_parts(cfg: ModelConfig) -> frozenset[str]:
    """The parts ``cfg.variant`` is made of: ``"fmri"`` (the graph branch), ``"smri"`` (a T1 image
    encoder), ``"table"`` (the table encoder) and ``"fusion"`` (both branches and a fusion stage)."""
    variant = _variant(cfg)
    parts = _modalities(resolve_config(cfg), variant)
    return parts | {"fusion"} if variant.fmri and variant.structural else parts


def model_settings(cfg: ModelConfig) -> dict[str, Any]:
    """The resolved configuration of ``cfg.variant`` without the sections of parts it does not
    have (the GAT of a DenseNet, the fusion of a single branch, the unused structural encoders):
    what its results depend on, so a run's identity changes only with them. Building a model from
    it (``from_dict(ModelConfig, ...)``) gives the same model."""
    from amage_core.config import to_dict

    resolved = resolve_config(cfg)
    parts = model_parts(cfg)
    structural = _STRUCTURAL_BRANCH[resolved.smri_encoder][1] if parts & {"smri", "table"} else None
    kept = {"gat": "fmri" in parts, "fusion": "fusion" in parts, "smri_encoder": structural is not None}
    kept.update({section: section == structural for _, section in _STRUCTURAL_BRANCH.values()})
    return {k: v for k, v in to_dict(resolved).items() if kept.get(k, True)}


def _modalities(cfg: ModelConfig, variant: Variant) -> frozenset[str]:
    names = {"fmri"} if variant.fmri else set()
    if variant.structural:
        names.add("table" if cfg.smri_encoder == "table" else "smri")
    return frozenset(names)


_NEEDS = {"fmri": "n_roi and node_features", "smri": "t1_shape", "table": "n_table_features"}


def build_model(cfg: ModelConfig, spec: InputSpec) -> BrainAgeModel:
    """Build ``cfg.variant`` for the inputs described by ``spec``.

    Raises ``ValueError`` for an unknown variant or when ``spec`` lacks a modality it needs.
    """
    variant = _variant(cfg)
    resolved = resolve_config(cfg)
    modalities = _modalities(resolved, variant)
    missing = sorted(modalities - spec.modalities)
    if missing:
        needs = "; ".join(f"{m} needs InputSpec.{_NEEDS[m]}" for m in missing)
        raise ValueError(f"variant {cfg.variant!r} needs {missing} inputs, absent from the InputSpec ({needs})")
    return BrainAgeModel(resolved, spec, modalities)


class BrainAgeModel(nn.Module):
    """Encoders (``fmri_encoder``, ``smri_encoder`` or ``table_encoder``), ``fusion`` (when both
    branches are used) and ``head``."""

    def __init__(self, cfg: ModelConfig, spec: InputSpec, modalities: frozenset[str]) -> None:
        super().__init__()
        self.cfg = cfg
        self.modalities = modalities
        self.fmri_encoder = (
            GraphEncoder(cfg.gat, spec.n_roi, spec.node_features, spec.network_index)
            if "fmri" in modalities else None
        )
        self.smri_encoder: DenseNetEncoder | SFCNEncoder | None = None
        self.table_encoder = TableEncoder(cfg.table, spec.n_table_features) if "table" in modalities else None
        if "smri" in modalities:
            self.smri_encoder = (
                SFCNEncoder(cfg.sfcn, spec.t1_shape) if cfg.smri_encoder == "sfcn"
                else DenseNetEncoder(cfg.densenet, spec.t1_shape)
            )
        structural = self.smri_encoder if self.smri_encoder is not None else self.table_encoder
        self.fusion = None
        if self.fmri_encoder is not None and structural is not None:
            self.fusion = Fusion(
                cfg.fusion, self.fmri_encoder.token_dim, self.fmri_encoder.n_tokens,
                structural.token_dim, structural.n_tokens,
            )
            head_in = self.fusion.out_dim
        else:
            single = self.fmri_encoder if self.fmri_encoder is not None else structural
            head_in = single.embedding_dim
        self.late = None
        if self.fusion is not None and cfg.fusion.late_fusion:
            self.late = LateFusion(self.fmri_encoder.embedding_dim, structural.embedding_dim, cfg.head_hidden)
        # with the late-fusion path, the fused head is a residual correction that starts at 0
        self.head = RegressionHead(head_in, cfg.head_hidden, zero=self.late is not None)
        self.frozen: tuple[str, ...] = ()              # submodules kept in eval mode, not trained
        self.finetuned_encoders: tuple[str, ...] = ()  # submodules trained at a lower lr
        self._encoded: EncodingCache | None = None     # set by cached_encodings (not saved)

    # -- pretrained branches ------------------------------------------------------------------
    @property
    def encoder_names(self) -> tuple[str, ...]:
        return tuple(n for n in ("fmri_encoder", "smri_encoder", "table_encoder") if getattr(self, n) is not None)

    def load_branches(self, branches: dict[str, dict[str, Tensor]], mode: str) -> None:
        """Start a fusion model from single-branch models' weights.

        ``branches``: ``"fmri"`` / ``"structural"`` -> the state dict of the single-branch model
        (its encoder and head). The encoders are copied, and the heads into the late-fusion path;
        ``mode`` ``"frozen"`` keeps all of them fixed (in eval mode: BatchNorm statistics and
        dropout of the pretrained model), ``"finetune"`` trains them at a lower lr
        (``TrainConfig.encoder_lr_scale``)."""
        if self.fusion is None:
            raise ValueError("load_branches is for fusion models (both branches)")
        structural = "smri_encoder" if self.smri_encoder is not None else "table_encoder"
        names = {"fmri": ("fmri_encoder", "fmri_head"), "structural": (structural, "structural_head")}
        loaded = []
        for branch, state in branches.items():
            encoder, head = names[branch]
            getattr(self, encoder).load_state_dict(_prefixed(state, encoder + "."))
            loaded.append(encoder)
            if self.late is not None:
                getattr(self.late, head).load_state_dict(_prefixed(state, "head."))
                loaded.append(f"late.{head}")
        if mode == "frozen":
            self.frozen = tuple(loaded)
            for name in loaded:
                self.get_submodule(name).requires_grad_(False)
            self.train(self.training)
        elif mode == "finetune":
            self.finetuned_encoders = tuple(loaded)
        else:
            raise ValueError(f"unknown branch mode {mode!r}; use 'frozen' or 'finetune'")

    @torch.no_grad()
    def set_late_weights(self, fit: dict, scaler) -> None:
        """Fix the late-fusion path to ``age = w_fmri * fMRI + w_structural * structural + intercept``
        (years; ``cv.blend_weights``), written in the scaled-age units of ``scaler``, and stop
        training it (the branch heads predict scaled age with the same scaler)."""
        w = torch.tensor([fit["w_fmri"], fit["w_structural"]], dtype=self.late.weight.dtype)
        self.late.weight.copy_(w)
        bias = (fit["intercept_years"] + (float(w.sum()) - 1.0) * scaler.center) / scaler.scale
        self.late.bias.fill_(bias)
        self.late.weight.requires_grad_(False)
        self.late.bias.requires_grad_(False)

    @property
    def encoders_frozen(self) -> bool:
        """Whether this is a fusion model whose every encoder is frozen (``load_branches`` with
        ``mode="frozen"``): its encodings of a participant are then fixed, and can be computed once."""
        return self.fusion is not None and all(name in self.frozen for name in self.encoder_names)

    @contextlib.contextmanager
    def cached_encodings(self, plain, augmented=None, n_augmented: int = 0, batch_size: int = 16,
                         device: torch.device | str = "cpu", extra=None) -> Iterator[EncodingCache]:
        """Encode every participant of ``plain`` once with the frozen encoders (and ``n_augmented``
        draws of ``augmented``, and ``extra`` participants of the same cohort in the plain view
        only, e.g. a validation split: :meth:`EncodingCache.of`); inside the ``with`` block, a batch
        whose participants (``batch.idx``, rows of that cohort) were all encoded reads their
        encodings instead of running the encoders (the batch may then carry only ``idx`` and
        ``y``); other batches run the encoders as usual. Training the fusion stage on frozen
        encoders thus costs the fusion and head only (``train.loop.fit`` uses it, and sets the
        epoch on the yielded cache). Batches of another cohort must be run under
        :meth:`encodings_suspended` (their rows would name other participants)."""
        if not self.encoders_frozen:
            raise ValueError("cached_encodings needs a fusion model with every encoder frozen")
        self._encoded = EncodingCache.of(self, plain, augmented, n_augmented, batch_size, device, extra)
        try:
            yield self._encoded
        finally:
            self._encoded = None

    @contextlib.contextmanager
    def encodings_suspended(self) -> Iterator[None]:
        """Inside the ``with`` block the encoders run on every batch, cache or not (for a dataset
        of another cohort than the cached one)."""
        saved, self._encoded = self._encoded, None
        try:
            yield
        finally:
            self._encoded = saved

    def train(self, mode: bool = True) -> BrainAgeModel:
        super().train(mode)
        for name in self.frozen:
            self.get_submodule(name).eval()
        return self

    def set_input_statistics(self, connectivity: Tensor) -> None:
        """FC node features standardised with training statistics: connectivity (P, R, R) of the
        training participants (no-op without an fMRI branch)."""
        if self.fmri_encoder is not None:
            self.fmri_encoder.set_input_statistics(connectivity)

    def forward(self, batch: Batch) -> ModelOutput:
        """Shapes: batch.x (sum_N, F_node), edge_index (2, E), edge_attr (E,) [fmri];
        batch.t1 (B, 1, D, H, W) [smri]; batch.tab (B, F_tab) [table].

        Returns a :class:`ModelOutput` with pred (B,).
        """
        cached = self._encoded.lookup(batch.idx, self.training) if self._encoded is not None else None
        if cached is not None:
            return self.readout(*cached)
        return self.readout(self.encode_fmri(batch), self.encode_structural(batch))

    def encode_fmri(self, batch: Batch) -> GraphEncoding | None:
        """The fMRI branch alone (``None`` without one): tokens (B, T, d), embedding (B, d)."""
        if self.fmri_encoder is None:
            return None
        return self.fmri_encoder(
            _field(batch, "x"), _field(batch, "edge_index"), getattr(batch, "edge_attr", None),
            _field(batch, "batch"), batch.num_graphs,
        )

    def encode_structural(self, batch: Batch) -> Encoding | None:
        """The structural branch alone (T1 image or table; ``None`` without one)."""
        if self.smri_encoder is not None:
            return self.smri_encoder(_field(batch, "t1"))
        if self.table_encoder is not None:
            return self.table_encoder(_field(batch, "tab"))
        return None

    def readout(self, fmri: GraphEncoding | None, structural: Encoding | None) -> ModelOutput:
        """Fusion (when both branches are used) and the regression head on encoded branches (so
        attribution tools can hold one branch fixed while perturbing the other)."""
        gate, attention, branches = None, {}, None
        if self.fusion is not None:
            embedding, gate, attention = self.fusion(fmri, structural)
        else:
            embedding = (fmri if fmri is not None else structural).embedding
        pred = self.head(embedding)
        if self.late is not None:
            late, branches = self.late(fmri.embedding, structural.embedding)
            pred = pred + late
        output = ModelOutput(pred=pred, embedding=embedding, gate=gate, branches=branches)
        if fmri is not None:
            output.attention = {**fmri.attention, **attention}
            output.node_scores = fmri.node_scores
            output.network_scores = fmri.network_scores
            output.edge_attention = fmri.edge_attention
        return output


@dataclass
class EncodingCache:
    """The frozen encoders' output for a set of participants, in one or more views: view 0 the
    plain inputs, views 1..V augmented draws. rows (N,) cohort rows; per view, fMRI and structural
    tokens (N, T, d), embeddings (N, d) and token masks (N, T) or ``None``. In training mode a
    batch reads view :attr:`train_view` (:meth:`set_epoch`), in eval mode view 0."""

    rows: Tensor
    views: list[tuple[tuple, tuple]]                  # view -> (fMRI, structural) (tokens, embedding, mask)
    position: dict[int, int] = field(init=False)      # cohort row -> index in the arrays
    train_view: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.position = {row: i for i, row in enumerate(self.rows.tolist())}
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        """Training epoch ``epoch`` (1-based) reads augmented view ``1 + (epoch - 1) % V`` (the
        plain view when there is no augmented one)."""
        augmented = len(self.views) - 1
        self.train_view = 1 + (epoch - 1) % augmented if augmented else 0

    @classmethod
    @torch.no_grad()
    def of(cls, model: BrainAgeModel, plain, augmented=None, n_augmented: int = 0,
           batch_size: int = 16, device: torch.device | str = "cpu", extra=None) -> EncodingCache:
        """Encode ``plain`` (the dataset without augmentation) and, when ``augmented`` is given,
        ``n_augmented`` draws of it (``augmented.set_epoch(v)`` for v = 1..n: the draws those
        training epochs would see): the same participants, in the same order, in every view. Only
        the T1 is augmented, so the augmented views run the structural encoder alone and share the
        plain view's fMRI encodings.
        ``extra`` (a plain dataset of the same cohort) is appended to the plain view only: it is
        read in eval mode (validation), never by a training batch."""
        from torch_geometric.loader import DataLoader

        def encode(dataset, branches=("fmri", "structural")):
            rows, parts = [], {name: [] for name in branches}
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                batch = batch.to(device)
                rows.append(batch.idx)
                for name in branches:
                    encoding = model.encode_fmri(batch) if name == "fmri" else model.encode_structural(batch)
                    parts[name].append((encoding.tokens, encoding.embedding, encoding.mask))
            return torch.cat(rows), tuple(_stacked(parts[name]) for name in branches)

        with torch.random.fork_rng(devices=[]):     # a DataLoader draws a seed: leave training's RNG alone
            rows, view = encode(plain)
            fmri = view[0]
            if extra is not None and len(extra):
                more, added = encode(extra)
                rows = torch.cat([rows, more])
                view = tuple(tuple(a if b is None else torch.cat([a, b]) for a, b in zip(mine, theirs))
                             for mine, theirs in zip(view, added))
            views = [view]
            for epoch in range(1, (n_augmented if augmented is not None else 0) + 1):
                augmented.set_epoch(epoch)      # only the T1 is augmented: the FC graphs stay the plain view's
                views.append((fmri, encode(augmented, ("structural",))[1][0]))
        return cls(rows, views)

    def lookup(self, idx: Tensor, training: bool) -> tuple[GraphEncoding, Encoding] | None:
        """The encodings of participants ``idx`` (B,), in that order; ``None`` unless all are cached."""
        try:
            take = torch.tensor([self.position[row] for row in idx.tolist()], device=self.rows.device)
        except KeyError:
            return None

        def rows_of(tokens, embedding, mask):
            return tokens[take], embedding[take], None if mask is None else mask[take]

        fmri, structural = self.views[self.train_view if training else 0]
        if len(take) and int(take.max()) >= len(fmri[1]):      # an extra (plain-only) participant
            return None
        return GraphEncoding(*rows_of(*fmri)), Encoding(*rows_of(*structural))


def _stacked(items: list[tuple]) -> tuple:
    tokens, embedding, mask = zip(*items)
    return torch.cat(tokens), torch.cat(embedding), None if mask[0] is None else torch.cat(mask)


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"the pretrained weights have no {prefix.rstrip('.')!r} entries")
    return out


def _field(batch: Batch, name: str) -> Tensor:
    value = getattr(batch, name, None)
    if value is None:
        raise ValueError(f"the batch has no {name!r} field, which this model's inputs need")
    return value


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per named top-level submodule, plus ``total``."""
    counts = {
        name: sum(p.numel() for p in child.parameters() if p.requires_grad)
        for name, child in model.named_children()
    }
    counts["total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts
