"""Typed configuration: one dataclass per component, profiles (YAML) fill them.

A profile (``amage_core/profiles/demo.yml``, ``paper.yml``, or a user's own YAML file) has one
section per station. :func:`load_profile` reads it into a :class:`Profile`; unknown keys and wrong
types are errors that name the key and the file, never silently ignored.

Settings that change no result are marked on their fields (``metadata``): :data:`RUNTIME` ones say
how and where the work runs (device, workers, threads, ``n_jobs``, ``strict``) and are given in
the profile's own ``runtime`` section (:func:`profile_from_dict`); ``TrainConfig.seeds`` (how many
seed runs the workflow makes, each with its own seed) stays under ``train``. Cache keys and a
run's identity record :func:`result_settings`, which leaves all of them out, so changing one reuses
every product. The settings a classical baseline reads are marked :data:`BASELINE`
(:func:`baseline_settings`).

Component configs live here (not in the modules that use them) so that imports point one way:
everything may import ``config``; ``config`` imports nothing of the project.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


# Field metadata. RUNTIME: how and where the work runs, never what it computes (the profile's
# ``runtime`` section); {"result": False} alone: changes no single run's result but is not about
# the machine (``TrainConfig.seeds``). BASELINE: a training setting the classical baselines read.
# FUSION / FMRI / SMRI: a training setting only a model with that part reads (a fusion stage, the
# fMRI graph branch, the T1 image branch); the others' identities leave it out (train_settings).
RUNTIME = types.MappingProxyType({"runtime": True, "result": False})
BASELINE = types.MappingProxyType({"baselines": True})
FUSION = types.MappingProxyType({"used_by": "fusion"})
FMRI = types.MappingProxyType({"used_by": "fmri"})
SMRI = types.MappingProxyType({"used_by": "smri"})


# --------------------------------------------------------------------------------------------
# Stations
# --------------------------------------------------------------------------------------------
@dataclass
class SynthConfig:
    """One synthetic cohort (see ``amage_core.synth``)."""

    preset: Literal["camcan-like", "oasis3-like"] = "camcan-like"
    n_subjects: int = 240
    seed: int = 0
    voxel_size: float = 6.0          # mm, isotropic T1 grid written to disk (paper scale: 2.0)
    n_bold_nifti: int = 8            # participants who also get voxelwise BOLD + confounds
    atlas: str = "dosenbach160"      # network-labelled atlas shipped with nilearn
    # --- added by the synth station (issue 3) ---
    extra_atlases: list[str] = field(default_factory=list)  # more XCP-D TSVs (e.g. seitzman300)
    bold_voxel_size: float = 4.0     # mm, isotropic grid of the voxelwise BOLD NIfTI subset
    n_volumes: int | None = None     # None: the preset's scan length (camcan-like 261)
    tr: float | None = None          # s; None: the preset's repetition time (camcan-like 1.97)
    brain_age_sd: float = 2.5        # years, shared deviation of brain age from age (both modalities)
    smri_deviation_sd: float = 3.0   # years, structural age's own deviation from brain age
    fmri_deviation_sd: float = 5.0   # years, functional age's own deviation from brain age


@dataclass
class CohortConfig:
    """Where one cohort of the book comes from: generated (``synthetic``) or a real dataset on disk.

    Real data: ``source`` names the layout (see ``amage prep --dataset``), ``root`` the dataset folder,
    ``derivatives`` the fMRIPrep/XCP-D output folder, ``options`` source-specific settings (e.g. OASIS-3
    clinical CSVs). ``synth`` is used only when ``source`` is ``synthetic``. Relative paths (``root``,
    ``derivatives``, path options) are relative to the repository root (``workflow.resolve_path``).
    ``prep`` overrides fields of the profile's shared ``prep`` section for this cohort only (e.g.
    ``{min_volumes: 70}`` for ABIDE's short scans); see :meth:`prep_config`.
    """

    source: Literal["synthetic", "camcan", "oasis3", "bids", "abide"] = "synthetic"
    synth: SynthConfig = field(default_factory=SynthConfig)
    root: str = ""
    derivatives: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    prep: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = {f.name for f in dataclasses.fields(PrepConfig)}
        unknown = sorted(set(self.prep) - allowed)
        if unknown:
            raise ConfigError(f"prep: unknown key(s) {unknown} in the cohort's prep override; "
                              f"allowed: {sorted(allowed)}")

    def prep_config(self, base: PrepConfig) -> PrepConfig:
        """The profile's ``prep`` section ``base`` with this cohort's overrides applied (validated)."""
        if not self.prep:
            return base
        return replace(base, **self.prep)


@dataclass
class PrepConfig:
    """Turning a source dataset into a prepared cohort (see ``amage_core.data``)."""

    atlas: str = "dosenbach160"
    atlas_dir: str | None = None                # nilearn data folder for fetched atlases (None: ~/nilearn_data)
    # "tangent" needs a group reference fitted inside each training fold: refused by prepare.
    fc_kind: Literal["correlation", "partial correlation", "tangent", "covariance"] = "correlation"
    # empirical = plain Pearson (as XCP-D and the authors); ledoit-wolf = nilearn's default shrinkage
    fc_estimator: Literal["empirical", "ledoit-wolf"] = "empirical"
    fisher_z: bool = True                       # arctanh of correlation kinds (clipped); diagonal 0
    fmri_input: Literal["auto", "xcpd", "bold"] = "auto"   # auto: XCP-D TSV if present, else BOLD + masker
    confound_strategy: str = "simple"          # nilearn load_confounds_strategy name
    fd_threshold: float = 0.5                   # mm, mean framewise displacement above -> excluded
    min_volumes: int = 100
    # drop-region: regions empty in any included participant are removed from the whole cohort
    empty_regions: Literal["drop-participant", "drop-region", "zero"] = "drop-participant"
    t1_source: Literal["auto", "fmriprep", "register", "resize"] = "auto"
    t1_shape: tuple[int, int, int] = (32, 40, 32)
    t1_crop_margin: int = 2                     # output voxels kept around the MNI brain bounding box
    t1_percentiles: tuple[float, float] = (1.0, 99.0)   # robust intensity range inside the brain mask
    modalities: list[str] = field(default_factory=list)  # subset of fmri/smri/table; empty: all the source has
    min_age: float = 5.0
    max_age: float = 100.0
    # runtime: participants prepared at once (-1: every core); strict: stop at the first participant
    # excluded at QC instead of preparing the others (the cohort, when it is made, is the same)
    n_jobs: int = field(default=1, metadata=RUNTIME)
    strict: bool = field(default=False, metadata=RUNTIME)


@dataclass
class GraphConfig:
    """How a connectivity matrix becomes a graph for the GAT (``amage_core.data.graph``)."""

    sparsify: Literal["topk", "proportional", "positive", "none"] = "topk"
    topk: int = 10                  # per-node neighbours kept by |weight|, then made symmetric (topk)
    density: float = 0.1            # fraction of the R(R-1)/2 region pairs kept by |weight| (proportional)
    self_loops: bool = True
    self_loop_weight: float = 1.0   # edge weight given to self-loops (models: issue 5)


@dataclass
class GATConfig:
    """Hierarchical graph attention encoder for the fMRI branch (``amage_core.models.gat``)."""

    hidden: int = 32                # channels per attention head in the ROI layers
    heads: int = 4                  # ROI-layer heads (concatenated) and network-level attention heads
    roi_layers: int = 2
    network_layers: int = 1         # self-attention layers over the network tokens (hierarchical)
    out_dim: int = 32               # network tokens, ROI tokens (flat) and the pooled embedding
    dropout: float = 0.1
    conv: Literal["gat", "gatv2", "gcn"] = "gatv2"
    hierarchical: bool = True
    n_learned_networks: int = 8     # used when the atlas has no network labels
    use_edge_weight: bool = True
    # models (issue 5): final_heads/readout/node_score give the released code's structure
    final_heads: int | None = None  # heads of the last ROI layer (averaged); None: ``heads``
    readout: Literal["attention", "mean"] = "attention"   # brain-level readout over networks/ROIs
    node_score: bool = False        # sigmoid node score re-weighting the ROI tokens (released code)
    ffn_mult: int = 2               # feed-forward width / out_dim in the network-level layers


@dataclass
class DenseNetConfig:
    """3D DenseNet trunk for the sMRI branch (MONAI ``DenseNet``)."""

    init_features: int = 16
    growth_rate: int = 8
    block_config: tuple[int, ...] = (2, 2, 2)
    bn_size: int = 2
    out_dim: int = 32               # token / embedding width after the linear projection
    dropout: float = 0.0
    checkpointing: bool = False     # activation checkpointing per trunk stage while training
    # paper: MONAI's stem (7^3 stride-2 conv + max-pool, /4), built for 128^3; small: 3^3 stride-1
    # conv + max-pool (/2), for small grids (32x40x32 keeps 4x5x4 tokens after two transitions)
    stem: Literal["paper", "small"] = "paper"


@dataclass
class SFCNConfig:
    """Simple Fully Convolutional Network (Peng et al. 2021) for the sMRI branch."""

    channels: tuple[int, ...] = (8, 16, 32, 32)   # one block each; all but the last halve the grid
    out_dim: int = 32
    dropout: float = 0.3


@dataclass
class TableConfig:
    """Encoder for structural tables (one token per regional measure)."""

    out_dim: int = 32
    hidden: int = 64
    dropout: float = 0.1


@dataclass
class FusionConfig:
    """Cross-attention and gated fusion (``amage_core.models.fusion``)."""

    dim: int = 32
    heads: int = 4
    # models (issue 5): cross_attention, fmri_query, combine, position_embedding added; gate lost "none"
    cross_attention: bool = True    # False: the pooled embeddings are combined directly
    direction: Literal["fmri-to-smri", "smri-to-fmri", "both"] = "both"
    fmri_query: Literal["tokens", "embedding"] = "tokens"  # embedding: one fMRI token (released code)
    combine: Literal["gate", "concat", "query"] = "gate"   # query: the fMRI-query output alone
    gate: Literal["vector", "scalar"] = "vector"
    position_embedding: bool = True  # learned embedding per token position before cross-attention
    ffn_mult: int = 2
    dropout: float = 0.1
    # residual late-fusion path: pred = w_f * fMRI head + w_s * structural head + b + head(fused),
    # the branch heads taken from the pretrained single-branch models, w = 0.5 and head(fused) = 0 at
    # the start, so the fusion starts as the average of its branches and learns a correction
    late_fusion: bool = True


@dataclass
class ModelConfig:
    """Which model variant and its components. ``variant`` names are listed in ``models.VARIANTS``."""

    variant: str = "amagenet"
    smri_encoder: Literal["densenet", "sfcn", "table"] = "densenet"
    gat: GATConfig = field(default_factory=GATConfig)
    densenet: DenseNetConfig = field(default_factory=DenseNetConfig)
    sfcn: SFCNConfig = field(default_factory=SFCNConfig)
    table: TableConfig = field(default_factory=TableConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    head_hidden: int = 32


@dataclass
class TrainConfig:
    """Fitting and evaluating one model (see ``amage_core.train``).

    The training recipe (``amage_core.train.loop``), the same for every deep variant: AdamW (no
    decay on norms, biases and embeddings), linear warmup then cosine decay over a fixed number of
    epochs, an exponential moving average (EMA) of the weights, BatchNorm statistics recomputed on
    the training data before the model is evaluated, standardised targets and FC inputs. No epoch
    is selected (the ``released-code`` protocol reproduces the authors' selection on the test fold).
    """

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3                 # peak learning rate, reached after the warmup
    weight_decay: float = 0.01       # AdamW, decoupled; weights only (not norms, biases, embeddings)
    warmup_fraction: float = 0.1     # of all optimiser steps, lr rising linearly from 0
    final_lr_fraction: float = 0.01  # the cosine decay ends at lr * final_lr_fraction
    ema_epochs: float = 2.0          # horizon of the weights' EMA, in epochs (0: no EMA)
    bn_recalibrate: bool = True      # BatchNorm statistics recomputed on training data before evaluation
    target: Literal["standard", "minmax"] = "standard"   # age scaling (minmax: the authors' [0, 1])
    # FC node features z-scored per edge with training statistics (off: it made the demo GAT worse,
    # MAE 11.6 vs 9.1, by amplifying the noise of low-variance edges; see the diagnostics chapter)
    standardize_fc: bool = field(default=False, metadata=FMRI)
    # fusion variants start from the single-branch models of the same folds (trained first, reused):
    # frozen encoders (fusion and head trained), encoders fine-tuned at lr * encoder_lr_scale, or scratch
    fusion_encoders: Literal["frozen", "finetune", "scratch"] = field(default="frozen", metadata=FUSION)
    encoder_lr_scale: float = field(default=0.1, metadata=FUSION)
    # the late-fusion weights are fit out of sample on the validation predictions of a second set
    # of branch runs that hold out this fraction of each training fold (0: learnt in sample)
    blend_fraction: float = field(default=0.2, metadata=FUSION)
    # pairs of blend runs, each holding out another of the disjoint validation parts (val_part
    # 0, 1, ...); the weights are fit on all their held-out participants. 1 / blend_fraction:
    # every training participant held out once (cross-fitting), at that many times the cost
    blend_folds: int = field(default=1, metadata=FUSION)
    # epochs of the fusion stage (with blend runs): "blend-split" chooses 0..epochs (0: the blend
    # alone) where the test situation is mirrored, on the blend runs' held-out participants
    # (train.cv.choose_fusion_epochs); "all" trains every epoch
    fusion_epochs: Literal["blend-split", "all"] = field(default="blend-split", metadata=FUSION)
    folds: int = field(default=5, metadata=BASELINE)
    # fraction of each outer training fold's participants the models train on (stratified on age,
    # drawn from the outer folds' seed and the fold, the same for every training seed and model);
    # the test folds stay whole. Below 1: the diagnostics page's MAE against training-set size
    train_fraction: float = field(default=1.0, metadata=BASELINE)
    # inner validation split of each training fold: monitors the learning curve (and, with
    # bias_fit="validation", fits the bias correction); it never chooses an epoch. 0: none, the
    # model trains on the whole training fold as the classical baselines do.
    val_fraction: float = 0.0
    # which of the floor(1 / val_fraction) disjoint validation parts of each training fold is held
    # out (train.splits.inner_split; 0: the usual inner split); the blend runs use 0..blend_folds-1
    val_part: int = 0
    seed: int = field(default=42, metadata=BASELINE)
    fold_seed: int | None = None     # seed of the outer folds (None: ``seed``; seed runs share folds)
    # deep models: training seeds run by workflow.seed_runs (seed, seed+1000, ...); each run has its
    # own seed, so this changes no run's result (left out of its key)
    seeds: int = field(default=1, metadata={"result": False})
    protocol: Literal["nested", "released-code"] = field(default="nested", metadata=BASELINE)
    augment: bool = field(default=False, metadata=SMRI)   # T1 augmentation (MONAI)
    # a fusion stage on frozen encoders encodes each training participant once per view: the plain
    # image and, with ``augment``, this many augmented draws (those of epochs 1..N), cycled through
    # the epochs (= epochs: exactly the encoders run on every batch, at full cost)
    encoded_views: int = field(default=4, metadata=FUSION)
    amp: bool = True                 # bf16 autocast on CUDA only
    # runtime (the profile's runtime section): torch device; DataLoader worker processes
    device: str = field(default="auto", metadata=RUNTIME)
    num_workers: int = field(default=0, metadata=RUNTIME)
    # CPU parallelism (results do not depend on them beyond floating-point rounding): folds fit at
    # once in separate processes, and torch threads per fit (0: torch's default, or the cores
    # shared out among fold_workers). Small models gain little from intra-op threads, and threads
    # that outnumber free cores make every step wait (seen here: 10x slower on a busy 2-core
    # machine), so the demo fits its 2 folds in 2 processes of 1 thread each. Fewer jobs than
    # fold_workers (a single cross-cohort fit) share that budget out (parallel.job_threads).
    fold_workers: int = field(default=1, metadata=RUNTIME)
    cpu_threads: int = field(default=0, metadata=RUNTIME)
    deterministic: bool = True
    age_bins: int = field(default=10, metadata=BASELINE)   # quantile age bins stratifying outer folds and inner split
    # evaluate.bias, for brain-age-gap analyses only (accuracy is always uncorrected): "beheshti"
    # (offset form; uses the test person's age when applied) or "cole" (no age needed)
    bias_method: Literal["cole", "beheshti"] = field(default="beheshti", metadata=BASELINE)
    # predictions the bias correction is fit on: the training fold's, or the inner validation
    # split's (needs val_fraction > 0; the released-code protocol always uses the training fold's)
    bias_fit: Literal["validation", "training"] = "training"

    @property
    def outer_fold_seed(self) -> int:
        """The seed that draws the outer folds: ``fold_seed``, or ``seed`` when it is ``None``."""
        return self.seed if self.fold_seed is None else self.fold_seed

    def __post_init__(self) -> None:
        if self.fold_workers < 1:
            raise ConfigError(f"fold_workers: must be at least 1 (got {self.fold_workers})")
        if self.cpu_threads < 0:
            raise ConfigError(f"cpu_threads: must be 0 (torch's default) or more (got {self.cpu_threads})")
        if self.seeds < 1:
            raise ConfigError(f"seeds: must be at least 1 (got {self.seeds})")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"train_fraction: must be in (0, 1] (got {self.train_fraction})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must be in [0, 1) (got {self.val_fraction})")
        val_parts, blend_parts = (validation_parts(f or 1.0) for f in (self.val_fraction, self.blend_fraction))
        if not 0 <= self.val_part < val_parts:
            raise ConfigError(f"val_part: must be in 0..{val_parts - 1} "
                              f"with val_fraction {self.val_fraction} (got {self.val_part})")
        if not 1 <= self.blend_folds <= blend_parts:
            raise ConfigError(f"blend_folds: must be in 1..{blend_parts} "
                              f"with blend_fraction {self.blend_fraction} (got {self.blend_folds})")
        if self.bias_fit == "validation" and self.val_fraction == 0.0:
            raise ConfigError("bias_fit: 'validation' needs val_fraction > 0")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"warmup_fraction: must be in [0, 1) (got {self.warmup_fraction})")


@dataclass
class BookConfig:
    """How ``amage book`` runs the chapters."""

    chapters: list[str] = field(default_factory=list)    # empty: every chapter in chapters/
    parameters: dict[str, Any] = field(default_factory=dict)            # given to every chapter
    chapter_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout_per_cell: int = 1800


@dataclass
class Profile:
    """A whole configuration: what ``--profile demo|paper|PATH`` selects."""

    name: str = "demo"
    description: str = ""
    workdir: str = "data"            # generated cohorts and runs (git-ignored); relative: from the repository root
    cohorts: dict[str, CohortConfig] = field(default_factory=dict)
    prep: PrepConfig = field(default_factory=PrepConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    book: BookConfig = field(default_factory=BookConfig)
    # graph settings a model variant gets instead of ``graph`` (e.g. the released code's all-positive-
    # edge graph for ``released-code``: faithful, but about 8x slower on a CPU than the top-k graph)
    variant_graph: dict[str, dict[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# dict <-> dataclass, with validation
# --------------------------------------------------------------------------------------------
def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type.

    Raises :class:`ConfigError` naming the dotted key (``where``) for unknown keys or bad values.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)       # (YAML keys need not be strings)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; allowed: {sorted(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:       # raised by a __post_init__ check: name where it happened
        raise ConfigError(f"{where}.{exc}" if where else str(exc)) from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(kt, k, where): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain JSON/YAML-friendly data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def result_settings(obj: Any) -> Any:
    """``to_dict(obj)`` without the fields that change no result (:data:`RUNTIME` ones and
    ``TrainConfig.seeds``), at every depth: what a cache key or a run's identity records."""
    if dataclasses.is_dataclass(obj):
        return {f.name: result_settings(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("result", True)}
    if isinstance(obj, (list, tuple)):
        return [result_settings(v) for v in obj]
    if isinstance(obj, dict):
        return {k: result_settings(v) for k, v in obj.items()}
    return obj


def validation_parts(val_fraction: float) -> int:
    """How many disjoint validation parts of ``val_fraction`` a training fold is split into
    (``train.splits.inner_split``'s ``part``)."""
    return max(1, int(1.0 / val_fraction + 1e-9))


def train_settings(cfg: TrainConfig, parts: frozenset[str]) -> dict[str, Any]:
    """:func:`result_settings` of ``cfg`` for a model made of ``parts`` (``"fusion"``, ``"fmri"``,
    ``"smri"``; ``models.amagenet.model_parts``): without the fields only other parts read
    (:data:`FUSION`, :data:`FMRI`, :data:`SMRI`), so that, e.g., a DenseNet run keeps its identity
    when the blend fraction or the FC standardisation changes."""
    settings = result_settings(cfg)
    return {f.name: settings[f.name] for f in dataclasses.fields(cfg)
            if f.name in settings and f.metadata.get("used_by") in (None, *parts)}


def runtime_settings(cfg: Any) -> dict[str, Any]:
    """The fields of dataclass ``cfg`` that :func:`result_settings` leaves out, with their values
    (a run records them in its config.json, outside its identity)."""
    return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
            if not f.metadata.get("result", True)}


def baseline_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings a baseline's identity records (fields marked :data:`BASELINE`: folds,
    train_fraction, seed, protocol, age_bins, bias_method; ``amage_core.baselines``, which also
    records its fold table): epochs, learning rate and the other deep-model settings change no
    classical baseline's result."""
    return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.metadata.get("baselines")}


def runtime_fields(cls: type) -> tuple[str, ...]:
    """Names of the :data:`RUNTIME` fields of dataclass ``cls``."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("runtime"))


def replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that also accepts nested dicts for nested dataclass fields."""
    merged = _deep_merge(to_dict(obj), changes)
    return from_dict(type(obj), merged)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = to_dict(v)
    return out


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads numbers as YAML 1.2 does (``1e-3`` is a number, not text) and refuses
    duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:           # an unhashable key: PyYAML's own error follows
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """YAML text -> Python values (safe; YAML 1.2 numbers such as ``1e-3``; duplicate keys refused)."""
    return yaml.load(text, Loader=_Yaml12Loader)


# the sections whose RUNTIME fields a profile's ``runtime`` section sets
RUNTIME_SECTIONS: dict[str, type] = {"train": TrainConfig, "prep": PrepConfig}


def profile_from_dict(data: Any) -> Profile:
    """A :class:`Profile` from a profile's YAML data: its ``runtime`` section's keys set the
    :data:`RUNTIME` fields of ``train`` and ``prep`` (:data:`RUNTIME_SECTIONS`), then every section
    is validated by :func:`from_dict`.

    A profile written before the ``runtime`` section, with these keys under ``train:`` or
    ``prep:``, still loads; a key given in both places, a result setting under ``runtime:`` or an
    unknown key is a :class:`ConfigError` naming it."""
    return from_dict(Profile, _apply_runtime(data))


def _apply_runtime(data: Any) -> Any:
    """Profile data with the ``runtime`` section's keys moved into the sections they configure."""
    if not isinstance(data, dict) or "runtime" not in data:
        return data
    data = dict(data)
    runtime = data.pop("runtime")
    runtime = {} if runtime is None else runtime
    if not isinstance(runtime, dict):
        raise ConfigError(f"runtime: expected a mapping, got {type(runtime).__name__}")
    owner = {name: section for section, cls in RUNTIME_SECTIONS.items() for name in runtime_fields(cls)}
    for key in runtime:
        if key in owner:
            continue
        for section, cls in RUNTIME_SECTIONS.items():
            if key in {f.name for f in dataclasses.fields(cls)}:
                raise ConfigError(f"runtime.{key}: not a runtime setting (runtime: {sorted(owner)}); "
                                  f"it belongs under {section}:")
        raise ConfigError(f"runtime: unknown key(s) {sorted(set(runtime) - set(owner), key=str)}; "
                          f"allowed: {sorted(owner)}")
    for section, cls in RUNTIME_SECTIONS.items():
        given = {k: v for k, v in runtime.items() if owner[k] == section}
        if not given:
            continue
        from_dict(cls, given, "runtime")          # type and range errors named runtime.<key>
        target = data.get(section) or {}
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: expected a mapping, got {type(target).__name__}")
        both = sorted(set(given) & set(target), key=str)
        if both:
            raise ConfigError(f"{both} given under both runtime: and {section}:; keep them under runtime: only")
        data[section] = {**target, **given}
    return data


def load_profile(name_or_path: str | Path, overrides: dict | None = None) -> Profile:
    """Read a profile by name (``demo``, ``paper``, a file in ``profiles/``) or by path (see
    :func:`profile_from_dict`); ``overrides`` (the same layout, ``runtime`` included) win over the
    file's values."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yml"))
        raise ConfigError(f"profile {str(name_or_path)!r} not found (known: {known}, or give a YAML path)")
    try:
        data = read_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    try:
        data = _apply_runtime(data)
        if overrides:
            data = _deep_merge(data, _apply_runtime(overrides))
        return from_dict(Profile, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def as_profile(profile: str | Path | Profile) -> Profile:
    """A :class:`Profile` as it is, or one read by :func:`load_profile` from its name or path."""
    return profile if isinstance(profile, Profile) else load_profile(profile)
