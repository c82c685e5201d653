"""The ABIDE path on a few participants of the shared data: prep -> site folds -> tiny runs -> the
autism participants predicted by the fold that held their site out (never trained on)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amage_core import abide
from amage_core import workflow as wf
from amage_core.config import load_profile, replace

pytestmark = pytest.mark.shared
ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "abide"
SITES = ("KKI", "OHSU", "UM_2")      # OHSU's scans have 78 volumes: kept by the cohort's min_volumes 70


def pick_sub_ids(per_site_controls: int = 7, per_site_autism: int = 3) -> list[int]:
    """Males with a FreeSurfer row: the first controls and autism participants (by SUB_ID) of SITES."""
    pheno = pd.read_csv(ROOT / "ABIDE_pcp" / "Phenotypic_V1_0b_preprocessed1.csv")
    fs = pd.read_csv(ROOT / "freesurfer_features_males.tsv", sep="\t", usecols=["FILE_ID"])
    pheno = pheno[pheno["FILE_ID"].isin(fs["FILE_ID"]) & pheno["SITE_ID"].isin(SITES)].sort_values("SUB_ID")
    ids = []
    for site in SITES:
        s = pheno[pheno["SITE_ID"] == site]
        ids += s.loc[s["DX_GROUP"] == 2, "SUB_ID"].head(per_site_controls).tolist()
        ids += s.loc[s["DX_GROUP"] == 1, "SUB_ID"].head(per_site_autism).tolist()
    return ids


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not (ROOT / "ABIDE_pcp").is_dir():
        pytest.skip(f"{ROOT} has no ABIDE_pcp cache")
    work = tmp_path_factory.mktemp("abide")
    prof = load_profile("demo", {
        "workdir": str(work), "cohorts": {"abide-males": {"options": {"sub_ids": pick_sub_ids()}}},
        "train": {"epochs": 2, "val_fraction": 0.3, "batch_size": 16},
        "graph": {"topk": 4}, "model": {"gat": {"hidden": 8, "heads": 2}},      # small: CPU test
        "book": {"chapter_parameters": {"11_abide": {"n_folds": 3}}}})
    return prof, abide.load(prof, "abide-males")


@pytest.fixture(scope="module")
def ridge(tiny):
    prof, data = tiny
    return abide.site_held_out(prof, data, "ridge-fc", n_folds=3)


def test_prepared_cohort_has_both_modalities_and_both_groups(tiny):
    _, data = tiny
    c = data.cohort
    assert c.modalities == frozenset({"fmri", "table"}) and c.connectivity.shape[1:] == (200, 200)
    assert c.manifest["source"]["root"] == str(ROOT.resolve())       # relative profile path, resolved
    assert set(c.participants["site"]) == set(SITES) and set(c.participants["sex"]) == {"M"}
    assert set(data.controls.participants["dx"]) == {"control"} and set(data.autism.participants["dx"]) == {"autism"}
    assert data.controls.n + data.autism.n == c.n and data.autism.n >= 6


def test_site_folds_never_share_a_site_and_autism_is_never_trained_on(tiny, ridge):
    _, data = tiny
    autism_ids = set(data.autism.participants["participant_id"])
    site_of = dict(zip(data.cohort.participants["participant_id"], data.cohort.participants["site"]))
    folds = pd.read_csv(ridge.run.path / "folds.tsv", sep="\t", dtype=str)
    assert not autism_ids & set(folds["participant_id"])
    for fold_dir in sorted(ridge.run.path.glob("fold-*")):
        split = pd.read_csv(fold_dir / "split.tsv", sep="\t", dtype=str)
        assert not autism_ids & set(split["participant_id"])
        train_sites = {site_of[p] for p in split.loc[split.role != "test", "participant_id"]}
        test_sites = {site_of[p] for p in split.loc[split.role == "test", "participant_id"]}
        assert train_sites and test_sites and not train_sites & test_sites
    assert set(ridge.run.predictions["participant_id"]) == set(data.controls.participants["participant_id"])
    # every autism participant is predicted by the fold that held their site out
    site_fold = ridge.folds.drop_duplicates("site").set_index("site")["fold"].astype(str)
    assert set(ridge.autism["participant_id"]) == autism_ids
    assert (ridge.autism["fold"].astype(str) == ridge.autism["site"].map(site_fold)).all()
    assert np.isfinite(ridge.autism[["predicted_age", "predicted_age_corrected"]].to_numpy()).all()


def reproduce(prof, data, result, model):
    """The held-out prediction path applied to the controls themselves must give the run's predictions."""
    as_targets = abide.AbideData(data.name, data.cohort, data.controls, data.controls)
    again = abide.predict_held_out(result.run, as_targets, result.folds, prof.train).set_index("participant_id")
    run = result.run.predictions.set_index("participant_id").loc[again.index]
    return again, run


def test_refit_baseline_reproduces_the_run(tiny, ridge):
    prof, data = tiny
    again, run = reproduce(prof, data, ridge, "ridge-fc")
    np.testing.assert_allclose(again["predicted_age"], run["predicted_age"], rtol=1e-6)
    np.testing.assert_allclose(again["predicted_age_corrected"], run["predicted_age_corrected"], rtol=1e-6)


def test_tiny_fusion_run_with_the_table_encoder(tiny):
    prof, data = tiny
    result = abide.site_held_out(prof, data, "amagenet", n_folds=3, train={"epochs": 1})
    assert result.run.complete and result.seconds > 0
    assert any(c.startswith("gate_") for c in result.autism.columns)
    again, run = reproduce(prof, data, result, "amagenet")          # fold checkpoints reload exactly
    np.testing.assert_allclose(again["predicted_age"], run["predicted_age"], rtol=1e-5, atol=1e-4)
    reused = abide.site_held_out(prof, data, "amagenet", n_folds=3, train={"epochs": 1})
    assert reused.run.reused and reused.seconds == result.seconds
    pd.testing.assert_frame_equal(reused.autism, result.autism, check_dtype=False)
    gaps = abide.gap_table(result, data)
    assert set(gaps["dx"]) == {"control", "autism"} and len(gaps) == data.cohort.n
    assert np.allclose(gaps["gap"], gaps["predicted_age"] - gaps["age"])


def test_benchmark_writes_each_models_figures(tiny, ridge, monkeypatch, tmp_path):
    from amage_core.bench.abide import abide_benchmark

    prof, data = tiny
    monkeypatch.setattr(abide, "MODELS", {"abide-males": {"ridge-fc": "ridge (FC)"}})
    # the demo profile names its own multimodal models; this benchmark runs the patched list
    prof = replace(prof, book={"chapter_parameters": {"11_abide": {"multimodal_models": None}}})
    out = tmp_path / "abide.json"
    result = abide_benchmark(prof, out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    entry = result["cohorts"]["abide-males"]["models"]["ridge-fc"]
    assert entry["mae"] == pytest.approx(ridge.run.metrics["uncorrected"]["pooled"]["mae"])
    assert entry["seconds"] == ridge.seconds and entry["reused"]
    assert entry["autism_gap_d_ci"][0] <= entry["autism_gap_d"] <= entry["autism_gap_d_ci"][1]
    assert result["cohorts"]["abide-males"]["n_sites"] == 3


def test_the_runs_are_the_workflows_own(tiny, ridge):
    """ABIDE goes through ``workflow.run`` like every cohort: the controls, sites held out."""
    prof, data = tiny
    assert ridge.run.path.parent == wf.workdir(prof) / "runs"
    assert ridge.run.path.name.startswith("abide-males-dxcontrol-bysite-ridge-fc-")
    same = wf.run(prof, "abide-males", "ridge-fc", train={"folds": 3}, where=abide.CONTROLS,
                  hold_out="site", progress=False)
    assert same.reused and same.path == ridge.run.path
    imposed = pd.read_csv(ridge.run.path / "folds.tsv", sep="\t", dtype=str)
    expected = ridge.folds[["participant_id", "fold"]].astype(str)
    pd.testing.assert_frame_equal(imposed, expected.reset_index(drop=True))
    # a run without held-out sites is another run (another folder), not this one
    plain = wf.run(prof, "abide-males", "ridge-fc", train={"folds": 3}, where=abide.CONTROLS, progress=False)
    assert plain.path != ridge.run.path
