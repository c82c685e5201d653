"""The abide cohorts of the profiles: paths from the repository root, per-cohort prep overrides,
and a clear "skipped" when the data is absent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from amage_core import abide
from amage_core import workflow as wf
from amage_core.bench.abide import abide_benchmark
from amage_core.config import ConfigError, CohortConfig, PrepConfig, load_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_profiles_name_both_abide_cohorts(name):
    prof = load_profile(name)
    for cohort in ("abide", "abide-males"):
        cc = prof.cohorts[cohort]
        assert cc.source == "abide" and wf.resolve_path(cc.root) == REPO / "../shared/data/abide"
        prep = cc.prep_config(prof.prep)
        assert prep.atlas == "cc200" and prep.min_volumes == 70
        assert prep.t1_shape == prof.prep.t1_shape          # everything else is the profile's
    assert "freesurfer" in prof.cohorts["abide-males"].options
    assert prof.cohorts["camcan"].prep_config(prof.prep) is prof.prep   # synthetic cohorts unchanged


def test_resolve_path_is_relative_to_the_repository_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert wf.resolve_path("../shared/x") == REPO / "../shared/x"
    assert wf.resolve_path("/abs/x") == Path("/abs/x")
    assert wf.resolve_path("~/x") == Path.home() / "x"


def test_relative_workdir_is_taken_from_the_repository_like_data_paths(tmp_path, monkeypatch):
    # a chapter opened in Jupyter runs in chapters/: it must find the book's data/, not make its own
    monkeypatch.chdir(tmp_path)
    assert wf.workdir(load_profile("demo")) == (REPO / "data").resolve()
    assert wf.workdir(load_profile("demo", {"workdir": str(tmp_path / "w")})) == tmp_path / "w"


def test_prep_override_is_validated_and_named():
    with pytest.raises(ConfigError, match=r"cohorts\.abide\.prep: unknown key\(s\) \['min_volume'\]"):
        load_profile("demo", {"cohorts": {"abide": {"prep": {"min_volume": 3}}}})
    with pytest.raises(ConfigError, match="min_volumes"):
        CohortConfig(prep={"min_volumes": "many"}).prep_config(PrepConfig())


def test_absent_data_is_skipped_with_a_reason(tmp_path):
    missing = load_profile("demo", {"cohorts": {"abide": {"root": str(tmp_path / "nowhere")}}})
    status = abide.availability(missing)
    assert not status.ok and "skipped" in status.message and "nowhere" in status.message
    empty = load_profile("demo", {"cohorts": {"abide": {"root": str(tmp_path)}}})
    assert abide.availability(empty).ok and "download" in abide.availability(empty).message
    assert not abide.availability(load_profile("demo"), "camcan").ok
    data, message = abide.load_all(missing)
    assert data is None and message == status.message
    out = tmp_path / "bench" / "abide.json"
    result = abide_benchmark(missing, out)
    assert result["available"] is False and json.loads(out.read_text())["available"] is False


def test_settings_come_from_the_chapter_parameters():
    params = {"n_folds": 4, "deep_epochs": 3, "multimodal_models": ["ridge-fc", "amagenet"],
              "fmri_only_models": ["ridge-fc"]}
    prof = load_profile("demo", {"book": {"chapter_parameters": {"11_abide": params}}})
    assert abide.settings(prof) == {"n_folds": 4, "train": {"epochs": 3}, "models": {
        "abide-males": ["ridge-fc", "amagenet"], "abide": ["ridge-fc"]}}
    paper = abide.settings(load_profile("paper"))
    assert paper["n_folds"] is None and paper["train"] == {} and paper["models"]["abide"] == ["ridge-fc", "fmri"]
    assert paper["models"]["abide-males"] == list(abide.MODELS["abide-males"])
    wrong = load_profile("demo", {"book": {"chapter_parameters": {"11_abide": {"multimodal_models": ["gcn"]}}}})
    with pytest.raises(ValueError, match=r"11_abide.multimodal_models: unknown model\(s\) \['gcn'\]"):
        abide.settings(wrong)


def test_a_failed_download_is_skipped_not_an_error(tmp_path, monkeypatch):
    import requests

    def offline(*args, **kwargs):
        raise requests.ConnectionError("Failed to resolve 's3.amazonaws.com'")

    monkeypatch.setattr(abide, "load", offline)
    empty = load_profile("demo", {"cohorts": {"abide-males": {"root": str(tmp_path)}}})
    data, message = abide.load_all(empty)
    assert data is None and message.startswith("skipped") and "ConnectionError" in message
