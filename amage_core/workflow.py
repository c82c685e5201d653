"""The book's pipeline: cohort -> prepared cohort -> runs, each computed once and then reused.

Chapters never recompute what another chapter already computed. Each product lives in a folder of
the profile's ``workdir`` named after a hash of what determines it, and each station reuses a
finished product with the same configuration and resumes an interrupted one (synthetic cohorts are
regenerated, preparation resumes per participant, training per fold and epoch).

Every function takes a :class:`~amage_core.config.Profile` (or its name/path) and returns the product.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from amage_core import io
from amage_core.config import CohortConfig, Profile, load_profile, replace, to_dict


# Graph settings a variant needs to be what it claims: the released code keeps every positive edge.
VARIANT_GRAPH: dict[str, dict[str, Any]] = {"released-code": {"sparsify": "positive"}}


def _profile(profile: str | Profile) -> Profile:
    return profile if isinstance(profile, Profile) else load_profile(profile)


def workdir(profile: str | Profile) -> Path:
    """Root of everything the profile generates (relative paths are taken from the current folder)."""
    return Path(_profile(profile).workdir).expanduser().resolve()


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
    out = workdir(prof) / "synth" / f"{name}-{io.stable_hash(to_dict(cfg))}"
    return generate_cohort(cfg, out, n_jobs=prof.prep.n_jobs, progress=progress, overwrite=True)


def prepared(profile: str | Profile, name: str, progress: bool = True):
    """The prepared cohort of ``name`` (generated and prepared on first use)."""
    from amage_core.data.prepare import prepare_cohort

    prof = _profile(profile)
    cc = cohort_config(prof, name)
    if cc.source == "synthetic":
        root, derivatives, source = synthetic_source(prof, name, progress), None, "bids"
        options = {"cohort": f"synthetic {cc.synth.preset}"}
    else:
        root = Path(cc.root).expanduser()
        derivatives = Path(cc.derivatives).expanduser() if cc.derivatives else None
        source, options = cc.source, dict(cc.options)
    key = {"source": source, "root": str(root), "derivatives": str(derivatives), "options": options,
           "prep": to_dict(prof.prep)}
    out = workdir(prof) / "prepared" / f"{name}-{io.stable_hash(key)}"
    return prepare_cohort(source, root, out, prof.prep, derivatives=derivatives, progress=progress, **options)


def run(
    profile: str | Profile,
    cohort: str,
    model: str,
    test_cohort: str | None = None,
    train: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    graph: dict[str, Any] | None = None,
    progress: bool = True,
):
    """Cross-validate ``model`` (a variant of ``amage_core.models.VARIANTS`` or a baseline of
    ``amage_core.baselines.BASELINES``) on ``cohort``; with ``test_cohort``, train on all of
    ``cohort`` and test on the other one.

    ``train``, ``model_overrides`` and ``graph`` change sections of the profile for this run only
    (e.g. ``train={"protocol": "released-code"}``, ``graph={"sparsify": "positive"}``); a variant
    listed in :data:`VARIANT_GRAPH` gets its graph settings unless ``graph`` is given.
    Returns the run's :class:`RunResult`."""
    from amage_core.baselines import BASELINES, run_baseline
    from amage_core.train.cv import cross_validate

    prof = _profile(profile)
    train_cfg = replace(prof.train, **(train or {}))
    graph_cfg = replace(prof.graph, **(graph if graph is not None else VARIANT_GRAPH.get(model, {})))
    model_cfg = None if model in BASELINES else replace(prof.model, variant=model, **(model_overrides or {}))
    data = prepared(prof, cohort, progress)
    test = prepared(prof, test_cohort, progress) if test_cohort else None
    key = {"cohort": data.manifest.get("config_hash"), "test": test.manifest.get("config_hash") if test else None,
           "model": model, "model_cfg": to_dict(model_cfg), "train": to_dict(train_cfg),
           "graph": to_dict(graph_cfg)}
    tag = f"{cohort}-to-{test_cohort}" if test_cohort else cohort
    out = workdir(prof) / "runs" / f"{tag}-{model}-{io.stable_hash(key)}"
    if model_cfg is None:
        return run_baseline(model, data, train_cfg, out, test_cohort=test, progress=progress)
    return cross_validate(data, model_cfg, train_cfg, graph_cfg, out, test_cohort=test,
                          resume=True, progress=progress)
