"""The book's pipeline: cohort -> prepared cohort -> runs, each computed once and then reused.

Chapters never recompute what another chapter already computed. Each product lives in a folder of
the profile's ``workdir`` named after a hash of what determines it, and each station reuses a
finished product with the same configuration and resumes an interrupted one (synthetic cohorts are
regenerated, preparation resumes per participant, training per fold and epoch).

Every function takes a :class:`~amage_core.config.Profile` (or its name/path) and returns the product.

A prepared cohort is checked against its source (every participant's files found and fingerprinted)
each time it is asked for, except within one call of :func:`run`, :func:`seed_runs`,
:func:`attributions` or :func:`occlusion`, which checks each cohort once (:func:`_checked_once`):
a fusion variant's seed runs ask for it 15 times (their branch and blend runs), and chapter 1 over 200.
"""
from __future__ import annotations

import contextvars
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from amage_core import io
from amage_core.config import (CohortConfig, Profile, as_profile as _profile, baseline_settings, replace,
                               result_settings, to_dict)


REPO_ROOT = Path(__file__).resolve().parent.parent
# source options (CohortConfig.options) that name files or folders, resolved like ``root``
PATH_OPTIONS = ("freesurfer", "table", "demographics", "clinical_dir")


def resolve_path(path: str | Path) -> Path:
    """A data path from a profile: ``~`` expanded; a relative path is taken from the repository
    root (so ``../shared/data/abide`` means the same folder whatever the current folder is)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def workdir(profile: str | Profile) -> Path:
    """Root of everything the profile generates; a relative path is taken from the repository root,
    as data paths are (:func:`resolve_path`), so a chapter opened in Jupyter, whose current folder
    is ``chapters/``, uses the same ``data/`` as ``amage book``."""
    return resolve_path(_profile(profile).workdir).resolve()


def product_path(profile: str | Profile, kind: str, label: str, key: Any, suffix: str = "") -> Path:
    """Where a cached product lives: ``<workdir>/<kind>/<label>-<hash of key><suffix>`` (``key``:
    what determines the product, configurations as :func:`~amage_core.config.result_settings`, so
    the profile's runtime settings never change it; ``suffix``: a product that is one file)."""
    return workdir(profile) / kind / f"{label}-{io.stable_hash(key)}{suffix}"


def cohort_config(profile: str | Profile, name: str) -> CohortConfig:
    prof = _profile(profile)
    if name not in prof.cohorts:
        raise ValueError(f"profile {prof.name!r} has no cohort {name!r} (cohorts: {sorted(prof.cohorts)})")
    return prof.cohorts[name]


def synthetic_source(profile: str | Profile, name: str, progress: bool = True) -> Path:
    """The synthetic BIDS dataset of cohort ``name`` (generated on first use); returns its root."""
    from amage_core.synth import generate_cohort

    prof = _profile(profile)
    cc = cohort_config(prof, name)
    if cc.source != "synthetic":
        raise ValueError(f"cohort {name!r} of profile {prof.name!r} is real {cc.source} data, not synthetic")
    cfg = cc.synth
    out = product_path(prof, "synth", name, result_settings(cfg))
    return generate_cohort(cfg, out, n_jobs=prof.prep.n_jobs, progress=progress, overwrite=True)


_CHECKED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("prepared_in_this_call", default=None)


def _checked_once(fn):
    """Within one call of ``fn`` (and everything it calls), :func:`prepared` checks each cohort
    against its source once and returns that prepared cohort when asked again."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _CHECKED.get() is not None:
            return fn(*args, **kwargs)
        token = _CHECKED.set({})
        try:
            return fn(*args, **kwargs)
        finally:
            _CHECKED.reset(token)
    return wrapper


def prepared(profile: str | Profile, name: str, progress: bool = True, where: dict[str, Any] | None = None):
    """The prepared cohort of ``name`` (generated and prepared on first use).

    ``where`` keeps the participants whose columns equal the given values (e.g. ``{"sex": "M"}``).

    The preparation settings are the profile's ``prep`` section with the cohort's own ``prep``
    overrides (:meth:`CohortConfig.prep_config`); relative ``root``, ``derivatives`` and path options
    (:data:`PATH_OPTIONS`) are taken from the repository root (:func:`resolve_path`)."""
    from amage_core.data.cohort import select
    from amage_core.data.prepare import prepare_cohort

    if where:
        return select(prepared(profile, name, progress), where)
    prof = _profile(profile)
    cc = cohort_config(prof, name)
    prep = cc.prep_config(prof.prep)
    if cc.source == "synthetic":
        root, derivatives, source = synthetic_source(prof, name, progress), None, "bids"
        options = {"cohort": f"synthetic {cc.synth.preset}"}
    else:
        root = resolve_path(cc.root)
        derivatives = resolve_path(cc.derivatives) if cc.derivatives else None
        source = cc.source
        options = {k: str(resolve_path(v)) if k in PATH_OPTIONS and isinstance(v, str) else v
                   for k, v in cc.options.items()}
    key = {"source": source, "root": str(root), "derivatives": str(derivatives), "options": options,
           "prep": result_settings(prep)}
    out = product_path(prof, "prepared", name, key)
    checked = _CHECKED.get()
    if checked is not None and out in checked:
        return checked[out]
    cohort = prepare_cohort(source, root, out, prep, derivatives=derivatives, progress=progress, **options)
    if checked is not None:
        checked[out] = cohort
    return cohort


@_checked_once
def run(
    profile: str | Profile,
    cohort: str,
    model: str,
    test_cohort: str | None = None,
    train: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    graph: dict[str, Any] | None = None,
    where: dict[str, Any] | None = None,
    test_where: dict[str, Any] | None = None,
    hold_out: str | None = None,
    progress: bool = True,
):
    """Cross-validate ``model`` (a variant of ``amage_core.models.VARIANTS`` or a baseline of
    ``amage_core.baselines.BASELINES``) on ``cohort``; with ``test_cohort``, test on that cohort
    the fold ensemble of the cross-validation (``train.cv``: each fold model, trained on its part of
    ``cohort``, predicts every test participant; the mean is the prediction). A deep model's fold
    models are those of the cross-validation run with the same settings, trained first (or
    reused), so transfer costs inference only.

    ``train``, ``model_overrides`` and ``graph`` change sections of the profile for this run only
    (e.g. ``train={"protocol": "released-code"}``, ``graph={"sparsify": "positive"}``); a variant
    listed in the profile's ``variant_graph`` gets those graph settings unless ``graph`` is given.
    ``where`` / ``test_where`` restrict the training / test cohort's participants (see :func:`prepared`),
    e.g. a model trained on males only and tested on females. ``hold_out`` names a participants
    column (e.g. ``"site"``) whose values are held out whole: the ``train.folds`` outer folds are
    :func:`~amage_core.evaluate.sites.site_folds` of that column (as many as it has values at most:
    leave-one-site-out), imposed on deep models and baselines alike. Returns the run's :class:`RunResult`."""
    from amage_core.baselines import BASELINES, run_baseline
    from amage_core.train.cv import cross_validate, run_settings

    prof = _profile(profile)
    train_cfg = replace(prof.train, **(train or {}))
    graph_cfg = _graph_config(prof, model, graph)
    model_cfg = None if model in BASELINES else replace(prof.model, variant=model, **(model_overrides or {}))
    pretrained = source = None
    if model_cfg is not None and test_cohort:
        # the fold models to transfer: the cross-validation run's (the branches too are theirs)
        source = run(prof, cohort, model, train=train, model_overrides=model_overrides, graph=graph,
                     where=where, hold_out=hold_out, progress=progress)
    if model_cfg is not None and is_fusion(model_cfg) and train_cfg.fusion_encoders != "scratch":
        from amage_core.train.cv import Branches, blend_splits, needs_blend

        options = dict(graph=to_dict(graph_cfg), where=where, hold_out=hold_out, progress=progress)
        pretrained = Branches(branch_runs(prof, cohort, model_cfg, train=train, **options))
        if needs_blend(model_cfg, train_cfg):
            # the blend runs (blend_folds pairs, each holding out another part of every training
            # fold) are trained once per set of outer folds and shared by every training seed (seed
            # runs share their folds): the late weights weigh the branches by how well each
            # predicts unseen participants, which the first seed's blend runs measure for all
            seed = {"seed": train_cfg.outer_fold_seed, "fold_seed": None}
            pretrained.blend = [branch_runs(prof, cohort, model_cfg, train={**(train or {}), **split, **seed},
                                            **options) for split in blend_splits(train_cfg)]
    data = prepared(prof, cohort, progress, where)
    test = prepared(prof, test_cohort, progress, test_where) if test_cohort else None
    key = {"cohort": data.manifest.get("config_hash"), "test": test.manifest.get("config_hash") if test else None,
           "variant": model, **({"train": baseline_settings(train_cfg)} if model_cfg is None
                                else run_settings(model_cfg, train_cfg, graph_cfg))}
    tag = f"{cohort}-to-{test_cohort}" if test_cohort else cohort
    tag += "".join(f"-{k}{v}" for k, v in sorted((where or {}).items()))
    assignment = None
    if hold_out:
        from amage_core.evaluate.sites import site_folds

        assignment = site_folds(data.participants, train_cfg.folds, hold_out)[["participant_id", "fold"]]
        key["hold_out"], tag = hold_out, f"{tag}-by{hold_out}"
    out = product_path(prof, "runs", f"{tag}-{model}", key)
    if model_cfg is None:
        return run_baseline(model, data, train_cfg, out, test_cohort=test, progress=progress,
                            assignment=assignment)
    return cross_validate(data, model_cfg, train_cfg, graph_cfg, out, test_cohort=test,
                          resume=True, progress=progress, pretrained=pretrained, reuse=source,
                          assignment=assignment)


def is_fusion(model_cfg) -> bool:
    """Whether a model variant fuses both branches (fMRI and a structural encoder)."""
    from amage_core.models.amagenet import is_fusion as fusion

    return fusion(model_cfg)


def branch_runs(profile: str | Profile, cohort: str, model_cfg, **run_options: Any) -> dict:
    """The single-branch runs a fusion variant starts from: ``{"fmri": run, "structural": run}``
    (``models.amagenet.branch_variants``: each encoder with the fusion variant's own settings), on
    the same cohort, folds, seed, graph and participants (``run_options`` as in :func:`run`); the
    book's own single-branch runs are these same runs when the settings agree, so they are trained
    once and reused."""
    from amage_core.models.amagenet import branch_variants

    return {branch: run(profile, cohort, variant, model_overrides=overrides, **run_options)
            for branch, (variant, overrides) in branch_variants(model_cfg).items()}


@_checked_once
def seed_runs(profile: str | Profile, cohort: str, model: str, seeds: int | None = None,
              train: dict[str, Any] | None = None, **run_options: Any):
    """``seeds`` (default: the profile's ``train.seeds``) runs of ``model`` that differ only in the
    training seed: the outer folds stay those of the profile's seed, each run trains with seed
    ``seed + 1000 * i`` (run 0 is :func:`run` itself). Returns a :class:`~amage_core.evaluate.seeds.SeedRuns`
    (per-seed runs, their spread and the seed-ensemble predictions). A classical baseline is
    deterministic given its folds: it is run once."""
    from amage_core.baselines import BASELINES
    from amage_core.evaluate.seeds import SeedRuns

    prof = _profile(profile)
    base = replace(prof.train, **(train or {}))
    n = 1 if model in BASELINES else (seeds or base.seeds)
    runs = []
    for i in range(n):
        options = dict(train or {})
        if i:
            options.update(seed=base.seed + 1000 * i, fold_seed=base.outer_fold_seed)
        runs.append(run(prof, cohort, model, train=options, **run_options))
    return SeedRuns(model, [base.seed + 1000 * i for i in range(n)], runs)


def _graph_config(prof: Profile, model: str, graph: dict[str, Any] | None):
    """The graph settings of a run: ``graph`` if given, else the variant's ``variant_graph`` entry."""
    return replace(prof.graph, **(graph if graph is not None else prof.variant_graph.get(model, {})))


def _explained(prof: Profile, cohort: str, model: str, where, run_options: dict[str, Any]):
    """(prepared cohort, run, graph settings, T1 grid, atlas sphere radius) of a run to explain."""
    from amage_core.data.atlas import load_atlas
    from amage_core.data.smri import target_grid

    if "test_cohort" in run_options:
        raise ValueError("attributions explain a cross-validation run (every participant by the fold "
                         "model that did not train on them); a cross-cohort run has no such folds")
    data = prepared(prof, cohort, progress=False, where=where)
    result = run(prof, cohort, model, where=where, progress=False, **run_options)
    grid = target_grid(tuple(prof.prep.t1_shape), prof.prep.t1_crop_margin) if data.t1 is not None else None
    radius = load_atlas(prof.prep.atlas).radius_mm
    return data, result, _graph_config(prof, model, run_options.get("graph")), grid, radius


@_checked_once
def attributions(profile: str | Profile, cohort: str, model: str = "amagenet", steps: int = 16,
                 where: dict[str, Any] | None = None, **run_options: Any):
    """Out-of-sample attributions of ``model``'s cross-validation run on ``cohort`` (computed once,
    stored in the run directory); see :mod:`amage_core.interpret.attributions`.

    ``where`` and ``run_options`` (``train``, ``model_overrides``, ``graph``) identify the run as in
    :func:`run`, e.g. ``where={"sex": "M"}`` for the males-only model or ``train={"seed": 7}`` for
    a run with another seed."""
    from amage_core.interpret.attributions import compute

    prof = _profile(profile)
    data, result, graph_cfg, grid, radius = _explained(prof, cohort, model, where, run_options)
    return compute(result, data, graph_cfg, grid, radius, steps=steps, train_cfg=prof.train)


@_checked_once
def occlusion(profile: str | Profile, cohort: str, model: str = "amagenet", per_fold: int = 8,
              mask_size: int = 8, overlap: float = 0.5, where: dict[str, Any] | None = None,
              **run_options: Any):
    """Out-of-sample T1 occlusion sensitivity (``monai.visualize.OcclusionSensitivity``) of
    ``per_fold`` held-out participants of each fold, spread over the age range (computed once, stored
    in the run directory); the run is identified as in :func:`attributions`. See
    :func:`amage_core.interpret.attributions.compute_occlusion`."""
    from amage_core.interpret.attributions import compute_occlusion

    prof = _profile(profile)
    data, result, graph_cfg, grid, radius = _explained(prof, cohort, model, where, run_options)
    return compute_occlusion(result, data, graph_cfg, grid, radius, per_fold=per_fold,
                             mask_size=mask_size, overlap=overlap, train_cfg=prof.train)


def lr_range(profile: str | Profile, cohort: str, model: str, steps: int = 200, lr_min: float = 1e-5,
             lr_max: float = 1.0, progress: bool = True):
    """Learning-rate range test of ``model`` (trained from scratch with the profile's recipe
    optimiser) on the training participants of outer fold 0 of ``cohort``; computed once, cached
    under ``<workdir>/diagnostics/``. See :func:`amage_core.train.diagnostics.lr_range_test`."""
    import pandas as pd
    import torch

    from amage_core.models import build_model
    from amage_core.parallel import cpu_threads, job_threads
    from amage_core.train.cv import fold_split, plan_folds, run_settings
    from amage_core.train.dataset import CohortDataset, input_spec
    from amage_core.train.diagnostics import lr_range_test

    prof = _profile(profile)
    data = prepared(prof, cohort, progress)
    model_cfg = replace(prof.model, variant=model)
    graph_cfg = _graph_config(prof, model, None)
    key = {"cohort": data.manifest.get("config_hash"), **run_settings(model_cfg, prof.train, graph_cfg),
           "steps": steps, "lr_min": lr_min, "lr_max": lr_max}
    out = product_path(prof, "diagnostics", f"lr-range-{cohort}-{model}", key, ".tsv")
    if out.is_file():
        return pd.read_csv(out, sep="\t")
    split = fold_split(data, plan_folds(data, prof.train), "0", prof.train)
    torch.manual_seed(prof.train.seed)
    net = build_model(model_cfg, input_spec(data))
    if prof.train.standardize_fc and "fmri" in net.modalities:
        net.set_input_statistics(torch.from_numpy(np.asarray(data.connectivity[split.fit_rows], dtype=np.float32)))
    dataset = CohortDataset(data, split.fit_rows, graph_cfg, split.scaler, frozenset(net.modalities),
                            augment=prof.train.augment, seed=prof.train.seed)
    with cpu_threads(job_threads(prof.train, 1, os.cpu_count() or 1)):
        table = lr_range_test(net, dataset, prof.train, lr_min=lr_min, lr_max=lr_max, steps=steps)
    io.write_tsv(out, table)
    return table
