"""Same seed, same machine: identical predictions on CPU (bitwise); every run directory and prepared
cohort records its configuration, seeds, library versions and git commit."""
from __future__ import annotations

import filecmp
import re
import subprocess

import pandas as pd
import torch

from amage_core.baselines import run_baseline
from amage_core.config import load_profile, replace
from amage_core.data.cohort import load_cohort
from amage_core.io import read_json
from amage_core.train.cv import cross_validate, fusion_branches
from rel_helpers import REPO


def _cv(prepared_ref, profile_path, out, **train):
    """What `amage train --model amagenet` does: the branches first, then the fusion from them."""
    prof = load_profile(profile_path)
    cohort, cfg = load_cohort(prepared_ref), replace(prof.train, **train)
    model = replace(prof.model, variant="amagenet")
    branches = fusion_branches(cohort, model, cfg, prof.graph, out.parent / f"{out.name}-branches", progress=False)
    return cross_validate(cohort, model, cfg, prof.graph, out, progress=False, pretrained=branches)


def test_the_same_seed_gives_bitwise_identical_predictions(tmp_path, prepared_ref, profile_path, train_ref):
    ref = train_ref[0]                              # made earlier in this process by `amage train`
    again = _cv(prepared_ref, profile_path, tmp_path / "again")
    assert filecmp.cmp(again.path / "predictions.tsv", ref / "predictions.tsv", shallow=False)
    a = pd.read_csv(again.path / "predictions.tsv", sep="\t")
    b = pd.read_csv(ref / "predictions.tsv", sep="\t")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for fold in ("fold-0", "fold-1"):
        wa = torch.load(again.path / fold / "checkpoint.pt", weights_only=True)["best_model"]
        wb = torch.load(ref / fold / "checkpoint.pt", weights_only=True)["best_model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # and the comparison can fail: another seed gives other predictions
    other = _cv(prepared_ref, profile_path, tmp_path / "other", seed=1, epochs=1)
    c = pd.read_csv(other.path / "predictions.tsv", sep="\t")
    assert not c["predicted_age"].equals(b["predicted_age"])


def _known_commit(sha: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=REPO).returncode == 0


def test_a_run_directory_records_config_seeds_versions_and_commit(train_ref, prepared_ref, profile_path):
    run = train_ref[0]
    cfg = read_json(run / "config.json")
    prof = load_profile(profile_path)
    assert cfg["variant"] == "amagenet" and cfg["protocol"] == "nested"
    assert cfg["model"]["gat"]["hidden"] == prof.model.gat.hidden and cfg["graph"]["topk"] == prof.graph.topk
    assert cfg["train"]["seed"] == prof.train.seed and cfg["train"]["epochs"] == prof.train.epochs
    assert cfg["seeds"] == {"folds": 0, "fold-0": 0, "fold-1": 1}
    for package in ("python", "torch", "numpy", "torch_geometric", "monai", "sklearn"):
        assert re.match(r"\d+\.\d+", cfg["versions"][package]), package
    assert re.fullmatch(r"[0-9a-f]{40}", cfg["git_commit"]) and _known_commit(cfg["git_commit"])
    manifest = read_json(prepared_ref / "manifest.json")
    assert cfg["data"]["arrays"] == manifest["arrays"]          # which data, by checksum
    for fold in ("fold-0", "fold-1"):
        assert read_json(run / fold / "fit.json")["seed"] == cfg["seeds"][fold]


def test_a_baseline_run_and_a_prepared_cohort_record_theirs(tmp_path, prepared_ref, profile_path):
    prof = load_profile(profile_path)
    result = run_baseline("ridge-fc", load_cohort(prepared_ref), prof.train, tmp_path / "ridge", progress=False)
    cfg = read_json(result.path / "config.json")
    assert cfg["seeds"]["folds"] == prof.train.seed and "sklearn" in cfg["versions"]
    assert re.fullmatch(r"[0-9a-f]{40}", cfg["git_commit"])
    again = run_baseline("ridge-fc", load_cohort(prepared_ref), prof.train, tmp_path / "ridge2", progress=False)
    assert filecmp.cmp(again.path / "predictions.tsv", result.path / "predictions.tsv", shallow=False)

    manifest = read_json(prepared_ref / "manifest.json")
    assert manifest["config"]["t1_shape"] == [12, 14, 12] and manifest["config_hash"]
    assert {"numpy", "nilearn", "nibabel"} <= set(manifest["versions"])
    assert manifest["source"]["name"] == "bids" and manifest["created"]
