"""``workflow.run`` across cohorts: the fold ensemble of the cross-validation, trained once."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from amage_core import workflow as wf
from amage_core.config import load_profile


def _profile(root):
    synth = {"n_bold_nifti": 0, "n_volumes": 120, "voxel_size": 8.0}
    spec = {"name": "wftransfer", "workdir": str(root / "data"),
            "cohorts": {"c": {"source": "synthetic", "synth": {"preset": "camcan-like", "n_subjects": 48,
                                                               "seed": 0, **synth}},
                        "o": {"source": "synthetic", "synth": {"preset": "oasis3-like", "n_subjects": 12,
                                                               "seed": 1, **synth}}},
            "prep": {"atlas": "dosenbach160", "t1_shape": [16, 20, 16], "n_jobs": 1, "min_volumes": 100},
            "graph": {"sparsify": "topk", "topk": 4},
            "model": {"gat": {"hidden": 4, "heads": 1, "out_dim": 8}, "head_hidden": 8,
                      "densenet": {"init_features": 4, "growth_rate": 4, "block_config": [1], "out_dim": 8},
                      "fusion": {"dim": 8, "heads": 1}},
            "train": {"epochs": 2, "batch_size": 8, "folds": 2, "seed": 0, "blend_fraction": 0.5}}
    path = root / "p.yml"
    path.write_text(yaml.safe_dump(spec))
    return load_profile(str(path))


@pytest.mark.slow
def test_transfer_reuses_every_fit_of_the_cross_validation(tmp_path, monkeypatch):
    from amage_core.train import loop
    from amage_core.train.rundir import fold_fit

    profile = _profile(tmp_path)
    within = wf.run(profile, "c", "amagenet", progress=False)      # branches, blend runs, fusion
    trained = sorted(p.name for p in (tmp_path / "data" / "runs").iterdir())

    def no_training(*args, **kwargs):
        raise AssertionError("the transfer trained a model the cross-validation had fit")

    monkeypatch.setattr(loop, "_train_epoch", no_training)
    from amage_core.data import prepare

    checks = []
    check = prepare.prepare_cohort
    monkeypatch.setattr(prepare, "prepare_cohort", lambda *a, **k: checks.append(a[2]) or check(*a, **k))
    transfer = wf.run(profile, "c", "amagenet", test_cohort="o", progress=False)
    # one check of each cohort against its source in the whole call (its runs ask again and again)
    assert len(checks) == len(set(checks)) == 2
    wf.prepared(profile, "o", progress=False), wf.prepared(profile, "o", progress=False)
    assert len(checks) == 4                                         # outside a call: every time
    runs = sorted(p.name for p in (tmp_path / "data" / "runs").iterdir())
    assert set(runs) - set(trained) == {transfer.path.name}          # no other run was made
    assert transfer.path.name.startswith("c-to-o-amagenet-")
    tested = wf.prepared(profile, "o", progress=False).participants["participant_id"].astype(str)
    assert sorted(transfer.predictions["participant_id"]) == sorted(tested)
    folds = [pd.read_csv(transfer.path / f"fold-{k}" / "predictions.tsv", sep="\t",
                         dtype={"participant_id": str}) for k in (0, 1)]
    np.testing.assert_allclose(transfer.predictions["predicted_age"],
                               (folds[0]["predicted_age"] + folds[1]["predicted_age"]) / 2)
    for k in (0, 1):        # the fusion stage of each fold kept the epochs the cross-validation chose
        assert "w_fmri" in fold_fit(within, k)["late_fusion"]
        chosen = [fold_fit(r, k)["fusion_epochs"]["epochs"]
                  for r in (within, transfer)]
        assert chosen[0] == chosen[1]


def _sited_cohort(root, n: int = 30):
    """``n`` participants at three sites whose structural table carries their age."""
    from amage_core.data.cohort import write_cohort

    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, n)
    tables = (age[:, None] - 50) / 20 * rng.normal(size=(1, 4)) + 0.1 * rng.normal(size=(n, 4))
    participants = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)], "age": age,
                                 "sex": rng.choice(["M", "F"], n), "site": np.repeat(["A", "B", "C"], n // 3)})
    return write_cohort(root, participants, tables=tables, table_columns=[f"t{i}" for i in range(4)],
                        config={"cohort": "sited"})


def test_hold_out_makes_the_folds_hold_whole_sites_out(tmp_path, monkeypatch):
    from amage_core.evaluate.sites import site_folds
    from amage_core.train.rundir import fold_roles, run_fold_names

    cohort = _sited_cohort(tmp_path / "cohort")
    monkeypatch.setattr(wf, "prepared", lambda *args, **kwargs: cohort)
    profile = load_profile("demo", {"workdir": str(tmp_path / "data"), "train": {"folds": 5}})
    run = wf.run(profile, "sited", "ridge-table", hold_out="site", progress=False)
    assert run.complete and run.path.name.startswith("sited-bysite-ridge-table-")
    assert run_fold_names(run) == ["0", "1", "2"]                  # 5 folds asked, 3 sites: one per site
    site = dict(zip(cohort.participants["participant_id"], cohort.participants["site"]))
    for fold in run_fold_names(run):
        roles = fold_roles(run, fold)
        assert len({site[p] for p in roles["test"]}) == 1
        assert not {site[p] for p in roles["test"]} & {site[p] for p in roles["fit"]}
    expected = site_folds(cohort.participants, 5)[["participant_id", "fold"]].astype(str)
    pd.testing.assert_frame_equal(pd.read_csv(run.path / "folds.tsv", sep="\t", dtype=str), expected)
    plain = wf.run(profile, "sited", "ridge-table", progress=False)
    assert plain.path != run.path and not plain.path.name.startswith("sited-bysite")
