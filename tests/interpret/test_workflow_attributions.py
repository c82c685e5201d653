"""``workflow.attributions`` / ``workflow.occlusion`` explain the run that ``where`` and the run options
name (a one-sex model, another seed), out-of-sample, from a tiny synthetic profile."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from amage_core import workflow as wf
from amage_core.config import load_profile


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return _profile(tmp_path_factory.mktemp("wfattr"))


def _profile(root, n_subjects: int = 32):
    spec = {"name": "wfattr", "workdir": str(root / "data"),
            "cohorts": {"c": {"source": "synthetic", "synth": {"preset": "camcan-like", "n_subjects": n_subjects, "seed": 0,
                                                               "voxel_size": 8.0, "n_bold_nifti": 0, "n_volumes": 120}}},
            "prep": {"atlas": "dosenbach160", "t1_shape": [16, 20, 16], "n_jobs": 1, "min_volumes": 100},
            "graph": {"sparsify": "topk", "topk": 4},
            "model": {"gat": {"hidden": 4, "heads": 1, "out_dim": 8}, "head_hidden": 8,
                      "densenet": {"init_features": 4, "growth_rate": 4, "block_config": [1], "out_dim": 8},
                      "fusion": {"dim": 8, "heads": 1}},
            "train": {"epochs": 1, "batch_size": 8, "folds": 2, "seed": 0, "val_fraction": 0.3, "bias_fit": "training"}}
    path = root / "p.yml"
    path.write_text(yaml.safe_dump(spec))
    return load_profile(str(path))


def _test_folds(run_result) -> pd.Series:
    return pd.read_csv(run_result.path / "folds.tsv", sep="\t", dtype=str).set_index("participant_id")["fold"]


@pytest.mark.slow
def test_where_and_seed_select_the_run_that_is_explained(profile):
    cohort = wf.prepared(profile, "c", progress=False)
    sex = cohort.participants.set_index("participant_id")["sex"]
    males = wf.attributions(profile, "c", "amagenet", steps=2, where={"sex": "M"})
    run_m = wf.run(profile, "c", "amagenet", where={"sex": "M"}, progress=False)
    assert set(sex[males.participant_id]) == {"M"} and len(males.participant_id) == (sex == "M").sum()
    folds = _test_folds(run_m)
    assert all(folds[p] == f for p, f in zip(males.participant_id, males.fold))     # out-of-sample
    other = wf.attributions(profile, "c", "amagenet", steps=2, train={"seed": 5})
    default = wf.attributions(profile, "c", "amagenet", steps=2)
    assert sorted(other.participant_id) == sorted(default.participant_id) == sorted(sex.index)
    assert not np.array_equal(other.get("roi_ig"), default.get("roi_ig"))        # another run explained
    occ = wf.occlusion(profile, "c", "amagenet", per_fold=2, mask_size=8, overlap=0.0, where={"sex": "F"})
    assert set(sex[occ.participant_id]) == {"F"} and len(occ.participant_id) == 4
    assert np.isfinite(occ.get("t1_occlusion")).all()
    with pytest.raises(ValueError, match="cross-validation"):
        wf.attributions(profile, "c", "amagenet", test_cohort="c")


@pytest.mark.slow
def test_seed_runs_of_a_fusion_share_one_pair_of_blend_runs(tmp_path):
    """Every training seed trains its own branches and fusion, on the same outer folds; the late
    weights of all seeds come from one pair of blend runs (the first seed's), fit per fold."""
    import json

    prof = _profile(tmp_path, n_subjects=110)     # blend split of a training fold: >= 10 (cv.MIN_BLEND)
    seeds = wf.seed_runs(prof, "c", "amagenet", seeds=2, progress=False)
    runs = sorted((tmp_path / "data" / "runs").iterdir())
    branch = {name: [r for r in runs if r.name.startswith(f"c-{name}-")] for name in ("fmri", "smri")}
    assert len(branch["fmri"]) == len(branch["smri"]) == 3             # 2 seeds + 1 blend run each
    fits = [json.loads((run.path / "fold-0" / "fit.json").read_text())["late_fusion"] for run in seeds.runs]
    assert fits[0]["w_fmri"] == fits[1]["w_fmri"] and fits[0]["n"] == fits[1]["n"] > 0
    assert _test_folds(seeds.runs[0]).equals(_test_folds(seeds.runs[1]))
