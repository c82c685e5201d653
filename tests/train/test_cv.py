"""cross_validate: run directory, leak-free protocol vs released-code, folds, cross-cohort, reuse."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from amage_core.config import ModelConfig, TrainConfig, load_profile, replace
from amage_core.train.cv import Branches, cross_validate
from train_fixtures import make_cohort, tiny_factory

PREDICTION_COLUMNS = ["participant_id", "fold", "age", "predicted_age", "predicted_age_corrected", "gate_0"]


def _cv(cohort, cfg, graph_cfg, out, **kw):
    return cross_validate(cohort, ModelConfig(), cfg, graph_cfg, out, build=tiny_factory(),
                          progress=False, **kw)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    from amage_core.config import GraphConfig

    tmp = tmp_path_factory.mktemp("cv")
    cohort = make_cohort(tmp / "cohort")
    cfg = TrainConfig(epochs=15, batch_size=8, lr=0.01, folds=3, seed=0, val_fraction=0.2, device="cpu")
    graph_cfg = GraphConfig(sparsify="topk", topk=3)
    return cohort, cfg, graph_cfg, _cv(cohort, cfg, graph_cfg, tmp / "run"), tmp


def test_run_directory_follows_the_contract(full_run):
    cohort, cfg, _, result, _ = full_run
    run = result.path
    assert result.complete and not result.reused
    pred = pd.read_csv(run / "predictions.tsv", sep="\t", dtype={"fold": str})
    assert list(pred.columns) == PREDICTION_COLUMNS
    assert pred["participant_id"].tolist() == cohort.participants["participant_id"].tolist()
    folds = pd.read_csv(run / "folds.tsv", sep="\t", dtype={"fold": str})
    assert folds.set_index("participant_id")["fold"].to_dict() == pred.set_index("participant_id")["fold"].to_dict()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds"] == ["0", "1", "2"] and metrics["corrected"]["pooled"]["n"] == cohort.n
    config = json.loads((run / "config.json").read_text())
    assert {"model", "train", "graph", "seeds", "versions", "git_commit", "config_hash"} <= set(config)
    for k in range(3):
        fold = run / f"fold-{k}"
        split = pd.read_csv(fold / "split.tsv", sep="\t")
        roles = split.groupby("role")["participant_id"].apply(set)
        assert not roles["fit"] & roles["val"] and not roles["val"] & roles["test"]
        assert not roles["fit"] & roles["test"]
        assert roles["test"] == set(folds.loc[folds["fold"] == str(k), "participant_id"])
        bias = json.loads((fold / "bias.json").read_text())
        scaler = json.loads((fold / "scaler.json").read_text())
        test_keys = {f"camcan-like/{p}" for p in roles["test"]}
        # the recipe fits the bias correction on the training fold; the validation split only
        # draws the learning curve (bias_fit="validation": test_bias_fit_on_validation)
        assert bias["source"] == "training" and not set(bias["fitted_on"]) & test_keys
        assert set(bias["fitted_on"]) == {f"camcan-like/{p}" for p in roles["fit"]}
        assert not set(scaler["fitted_on"]) & test_keys
        assert (fold / "history.csv").is_file()
        torch.load(fold / "checkpoint.pt", weights_only=True)


def test_tiny_model_beats_the_mean_predictor(full_run):
    cohort, _, _, result, _ = full_run
    pred = result.predictions
    ages = cohort.participants.set_index("participant_id")["age"]
    baseline = []     # the training-fold mean age predicted for every test participant
    for fold, test in pred.groupby("fold"):
        train_mean = ages.drop(test["participant_id"]).mean()
        baseline.append(np.abs(test["age"] - train_mean))
    mean_mae = np.concatenate(baseline).mean()
    assert result.metrics["uncorrected"]["pooled"]["mae"] < 0.6 * mean_mae


def test_finished_run_is_reused_and_other_configs_refused(full_run):
    cohort, cfg, graph_cfg, result, _ = full_run
    again = _cv(cohort, cfg, graph_cfg, result.path)
    assert again.reused and again.predictions.equals(result.predictions)
    with pytest.raises(ValueError, match="another configuration"):
        _cv(cohort, replace(cfg, lr=0.5), graph_cfg, result.path)


def test_folds_in_separate_calls_give_the_same_run(full_run):
    cohort, cfg, graph_cfg, result, tmp = full_run
    out = tmp / "by-fold"
    partial = [_cv(cohort, cfg, graph_cfg, out, folds=[k]) for k in (2, 0, 1)]
    assert [p.complete for p in partial] == [False, False, True]
    pd.testing.assert_frame_equal(partial[-1].predictions, result.predictions)


def test_folds_fit_in_parallel_processes_give_the_same_run(full_run):
    cohort, cfg, graph_cfg, result, tmp = full_run
    parallel = _cv(cohort, replace(cfg, fold_workers=2, cpu_threads=1), graph_cfg, tmp / "parallel")
    assert parallel.complete
    # the same folds, seeds and data order; only the thread count differs (floating-point rounding)
    pd.testing.assert_frame_equal(parallel.predictions.drop(columns=["predicted_age", "predicted_age_corrected", "gate_0"]),
                                  result.predictions.drop(columns=["predicted_age", "predicted_age_corrected", "gate_0"]))
    np.testing.assert_allclose(parallel.predictions["predicted_age"], result.predictions["predicted_age"], atol=1e-3)
    # and it is the same run: a sequential call with the parallel settings reuses it
    assert _cv(cohort, replace(cfg, fold_workers=2, cpu_threads=1), graph_cfg, tmp / "parallel").reused


def test_parallel_settings_are_checked():
    from amage_core.config import ConfigError

    with pytest.raises(ConfigError, match="fold_workers"):
        TrainConfig(fold_workers=0)
    with pytest.raises(ConfigError, match="cpu_threads"):
        TrainConfig(cpu_threads=-1)


def _perturb_test_ages(cohort, tmp, fold_ids):
    """The same cohort, with the test fold's ages moved far outside the training range."""
    other = make_cohort(tmp, n=cohort.n)
    is_test = other.participants["participant_id"].isin(fold_ids)
    other.participants.loc[is_test, "age"] += 50.0
    return other


@pytest.mark.parametrize("protocol", ["nested", "released-code"])
def test_test_ages_reach_training_only_under_released_code(full_run, tmp_path, protocol):
    cohort, cfg, graph_cfg, result, _ = full_run
    cfg = replace(cfg, epochs=3, protocol=protocol)
    folds = pd.read_csv(result.path / "folds.tsv", sep="\t", dtype={"fold": str})
    test_ids = folds.loc[folds["fold"] == "0", "participant_id"]
    original = _cv(cohort, cfg, graph_cfg, tmp_path / "a", folds=[0], assignment=folds)
    moved = _cv(_perturb_test_ages(cohort, tmp_path / "c", test_ids), cfg, graph_cfg, tmp_path / "b",
                folds=[0], assignment=folds)
    a = pd.read_csv(original.path / "fold-0" / "predictions.tsv", sep="\t")
    b = pd.read_csv(moved.path / "fold-0" / "predictions.tsv", sep="\t")
    scaler = json.loads((original.path / "fold-0" / "scaler.json").read_text())
    fit = json.loads((original.path / "fold-0" / "fit.json").read_text())
    test_keys = {f"camcan-like/{p}" for p in test_ids}
    if protocol == "nested":    # predictions and the fitted bias correction never depend on test ages
        np.testing.assert_array_equal(a["predicted_age"], b["predicted_age"])
        bias_a, bias_b = (json.loads((r.path / "fold-0" / "bias.json").read_text()) for r in (original, moved))
        assert (bias_a["slope"], bias_a["intercept"]) == (bias_b["slope"], bias_b["intercept"])
        assert not test_keys & set(scaler["fitted_on"]) and fit["selected_on"] == "none"
    else:                       # the authors' scaler sees every age; the epoch is picked on the test fold
        assert not np.array_equal(a["predicted_age"], b["predicted_age"])
        assert test_keys <= set(scaler["fitted_on"]) and len(scaler["fitted_on"]) == cohort.n
        assert fit["selected_on"] == "test" and fit["n_val"] == 0


def test_cross_cohort_with_sessions_and_reused_ids(tmp_path, graph_cfg):
    train = make_cohort(tmp_path / "a", n=30)
    test = make_cohort(tmp_path / "b", n=16, seed=5, name="oasis3-like", age_range=(60, 90), sessions=True)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.01, seed=0, val_fraction=0.2, device="cpu")
    result = _cv(train, cfg, graph_cfg, tmp_path / "run", test_cohort=test)
    pred = result.predictions
    assert set(pred["fold"]) == {"external"} and len(pred) == test.n
    assert list(pred.columns[:3]) == ["participant_id", "session", "fold"]
    assert pred["participant_id"].iloc[0] == "sub-0000"      # same ids as training: no false leak alarm
    split = pd.read_csv(result.path / "fold-0" / "split.tsv", sep="\t")
    assert (split["role"] == "test").sum() == test.n // 2


def test_cross_cohort_run_is_the_fold_ensemble_of_the_cross_validation(tmp_path, graph_cfg, monkeypatch):
    from amage_core.train import loop
    from amage_core.train.checkpoint import load_checkpoint

    train = make_cohort(tmp_path / "a", n=30)
    test = make_cohort(tmp_path / "b", n=12, seed=5, name="oasis3-like", age_range=(60, 90))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.01, seed=0, folds=3, device="cpu")
    cv = _cv(train, cfg, graph_cfg, tmp_path / "cv")

    def no_training(*args, **kwargs):
        raise AssertionError("a fold trained although the cross-validation run had fit it")

    monkeypatch.setattr(loop, "_train_epoch", no_training)
    transfer = _cv(train, cfg, graph_cfg, tmp_path / "transfer", test_cohort=test, reuse=cv)
    folds = [pd.read_csv(transfer.path / f"fold-{k}" / "predictions.tsv", sep="\t") for k in range(3)]
    assert all(len(f) == test.n for f in folds)
    np.testing.assert_allclose(transfer.predictions["predicted_age"],
                               np.mean([f["predicted_age"] for f in folds], axis=0))
    assert not np.allclose(folds[0]["predicted_age"], folds[1]["predicted_age"])   # three models
    for k in range(3):       # the very weights of the cross-validation's fold k
        kept = [load_checkpoint(r.path / f"fold-{k}" / "checkpoint.pt")["best_model"] for r in (cv, transfer)]
        assert all(torch.equal(kept[0][name], kept[1][name]) for name in kept[0])
    with pytest.raises(AssertionError, match="a fold trained"):    # other settings: it would train
        _cv(train, replace(cfg, lr=0.02), graph_cfg, tmp_path / "other", test_cohort=test, reuse=cv)


@pytest.mark.filterwarnings("ignore:bias correction slope")   # one epoch: near-constant predictions
def test_real_model_variant_runs_through_cross_validate(tmp_path, repo):
    profile = load_profile(repo / "tests" / "profiles" / "tiny.yml")
    cohort = make_cohort(tmp_path / "c", n=30)
    cfg = replace(profile.train, epochs=1, folds=2, val_fraction=0.2, device="cpu")
    result = cross_validate(cohort, profile.model, cfg, profile.graph, tmp_path / "run",
                            variant="amagenet", progress=False, folds=[0])
    assert not result.complete
    pred = pd.read_csv(result.path / "fold-0" / "predictions.tsv", sep="\t")
    assert pred["predicted_age"].notna().all() and "gate_0" in pred


def test_bias_fit_on_validation(full_run, tmp_path):
    cohort, cfg, graph_cfg, result, _ = full_run
    folds = pd.read_csv(result.path / "folds.tsv", sep="\t", dtype={"fold": str})
    run = _cv(cohort, replace(cfg, epochs=2, bias_fit="validation"), graph_cfg, tmp_path / "v",
              folds=[0], assignment=folds)
    split = pd.read_csv(run.path / "fold-0" / "split.tsv", sep="\t")
    bias = json.loads((run.path / "fold-0" / "bias.json").read_text())
    assert bias["source"] == "validation"
    assert set(bias["fitted_on"]) == {f"camcan-like/{p}" for p in split.loc[split["role"] == "val", "participant_id"]}


@pytest.mark.filterwarnings("ignore:bias correction slope")
def test_fusion_starts_from_the_branches_of_the_same_folds(tmp_path, repo):
    """A fusion variant loads each fold's fMRI and DenseNet weights from the single-branch runs,
    keeps them frozen, and refuses branches fit on other participants."""
    from amage_core.train.cv import fold_weights

    profile = load_profile(repo / "tests" / "profiles" / "tiny.yml")
    cohort = make_cohort(tmp_path / "c", n=30)
    cfg = replace(profile.train, epochs=2, folds=2, val_fraction=0.0, device="cpu", fold_workers=1)
    branches = {b: cross_validate(cohort, profile.model, cfg, profile.graph, tmp_path / b, variant=v,
                                  progress=False)
                for b, v in (("fmri", "fmri"), ("structural", "smri"))}
    fused = cross_validate(cohort, profile.model, cfg, profile.graph, tmp_path / "fused",
                           variant="amagenet", progress=False, pretrained=Branches(branches))
    assert fused.complete
    for fold in ("0", "1"):
        weights = fold_weights(fused.path, fold)
        for branch, prefix in (("fmri", "fmri_encoder."), ("structural", "smri_encoder.")):
            own = fold_weights(branches[branch].path, fold)
            for key, value in own.items():
                if key.startswith(prefix):
                    assert torch.equal(weights[key], value), key          # frozen encoder
                elif key.startswith("head."):
                    head = "late.fmri_head." if branch == "fmri" else "late.structural_head."
                    assert torch.equal(weights[head + key[len("head."):]], value), key
    other = replace(cfg, seed=7)       # other inner seeds/folds: the branches were fit on others
    with pytest.raises(ValueError, match="other participants|fit fold"):
        cross_validate(cohort, profile.model, replace(other, val_fraction=0.3), profile.graph,
                       tmp_path / "bad", variant="amagenet", progress=False, pretrained=Branches(branches),
                       assignment=pd.read_csv(branches["fmri"].path / "folds.tsv", sep="\t", dtype=str))


@pytest.mark.filterwarnings("ignore:bias correction slope")
def test_fusion_epochs_are_chosen_on_the_blend_split_inside_the_training_fold(tmp_path, repo, monkeypatch):
    """The fusion stage trains the number of epochs (0..E) whose loss on the blend runs' held-out
    participants was lowest, with encoders the blend runs trained on the others; none of them is
    in the test fold. With 0 epochs the fusion predicts the blend of its branches exactly."""
    from amage_core.train import cv
    from amage_core.train.cv import fusion_branches
    from amage_core.train.rundir import FUSION_EPOCHS, fold_histories

    profile = load_profile(repo / "tests" / "profiles" / "tiny.yml")
    cohort = make_cohort(tmp_path / "c", n=60)
    cfg = replace(profile.train, epochs=3, folds=2, val_fraction=0.0, blend_fraction=0.4, device="cpu",
                  fold_workers=1)
    model_cfg = replace(profile.model, variant="amagenet")
    branches = fusion_branches(cohort, model_cfg, cfg, profile.graph, tmp_path / "branches", progress=False)
    fused = cross_validate(cohort, model_cfg, cfg, profile.graph, tmp_path / "fused", progress=False,
                           pretrained=branches)
    folds = pd.read_csv(fused.path / "folds.tsv", sep="\t", dtype=str)
    for fold in ("0", "1"):
        record = json.loads((fused.path / f"fold-{fold}" / "fit.json").read_text())
        chosen = record["fusion_epochs"]
        assert len(chosen["val_loss"]) == cfg.epochs + 1
        assert chosen["epochs"] == int(np.nanargmin(np.array(chosen["val_loss"], dtype=float)))
        assert record["kept_epoch"] == record["epochs_run"] == chosen["epochs"]
        history = pd.read_csv(fused.path / f"fold-{fold}" / FUSION_EPOCHS / "history.csv")
        np.testing.assert_allclose(history["val_loss"], chosen["val_loss"][1:])
        # the fold's learning curve shown in the book is that choice's, every epoch of it
        pd.testing.assert_frame_equal(fold_histories(fused.path)[fold], history)
        roles = pd.read_csv(branches.blend[0]["fmri"].path / f"fold-{fold}" / "split.tsv", sep="\t", dtype=str)
        roles = roles[roles["role"].isin(["fit", "val"])]
        test_ids = set(folds.loc[folds["fold"] == fold, "participant_id"])
        assert not set(roles["participant_id"]) & test_ids
        assert chosen["n_fit"] + chosen["n_val"] == len(roles) == 60 - len(test_ids)
    from amage_core.report import fusion_weights

    shown = fusion_weights(fused).reset_index()      # the book's table of what the fusion learned
    for _, row in shown.iterrows():
        record = json.loads((fused.path / f"fold-{row['fold']}" / "fit.json").read_text())["fusion_epochs"]
        assert row["fusion epochs"] == record["epochs"]
        assert row["held-out loss, kept"] <= row["held-out loss, blend"]

    def blend_only(*args, **kwargs):
        return {"epochs": 0, "val_loss": [0.0], "n_fit": 0, "n_val": 0}

    monkeypatch.setattr(cv, "choose_fusion_epochs", blend_only)
    blended = cross_validate(cohort, model_cfg, cfg, profile.graph, tmp_path / "blended", progress=False,
                             pretrained=branches)
    pred = pd.read_csv(blended.path / "predictions.tsv", sep="\t", dtype={"participant_id": str})
    own = {b: pd.read_csv(r.path / "predictions.tsv", sep="\t", dtype={"participant_id": str})
           .set_index("participant_id")["predicted_age"] for b, r in branches.runs.items()}
    for fold, part in pred.groupby("fold"):
        late = json.loads((blended.path / f"fold-{fold}" / "fit.json").read_text())["late_fusion"]
        expected = (late["w_fmri"] * own["fmri"].loc[part["participant_id"]].to_numpy()
                    + late["w_structural"] * own["structural"].loc[part["participant_id"]].to_numpy()
                    + late["intercept_years"])
        np.testing.assert_allclose(part["predicted_age"], expected, rtol=1e-5, atol=1e-3)


def test_cross_fitted_blend_runs_hold_out_every_training_participant_once(tmp_path, repo):
    """With blend_folds = 1 / blend_fraction, the pairs of blend runs hold out disjoint parts of each
    training fold that together are the whole of it, and the late weights are fit on all of them."""
    from amage_core.train.cv import fusion_branches
    from amage_core.train.rundir import fold_roles

    profile = load_profile(repo / "tests" / "profiles" / "tiny.yml")
    cohort = make_cohort(tmp_path / "c", n=48)
    cfg = replace(profile.train, epochs=1, folds=2, val_fraction=0.0, blend_fraction=0.5, blend_folds=2,
                  device="cpu", fold_workers=1)
    model_cfg = replace(profile.model, variant="amagenet")
    branches = fusion_branches(cohort, model_cfg, cfg, profile.graph, tmp_path / "branches", progress=False)
    assert len(branches.blend) == 2
    assert branches.blend[0]["fmri"].path.name == "fmri-blend" and branches.blend[1]["fmri"].path.name == "fmri-blend-1"
    fused = cross_validate(cohort, model_cfg, replace(cfg, fusion_epochs="all"), profile.graph, tmp_path / "fused",
                           progress=False, pretrained=branches)
    for fold in ("0", "1"):
        held = [fold_roles(pair[branch].path, fold)["val"] for pair in branches.blend for branch in pair]
        assert held[0] == held[1] and held[2] == held[3] and not held[0] & held[2]
        training = fold_roles(branches.runs["fmri"].path, fold)["fit"]
        assert held[0] | held[2] == training
        late = json.loads((fused.path / f"fold-{fold}" / "fit.json").read_text())["late_fusion"]
        assert late["n"] == len(training)


def test_blend_weights_are_fit_out_of_sample_and_fixed(tmp_path, repo):
    """The late-fusion weights come from the blend runs' validation predictions (non-negative least
    squares) and the fused model's late path then computes exactly that combination in years."""
    from types import SimpleNamespace

    from amage_core.models import InputSpec, build_model
    from amage_core.models.testing import random_batch, tiny_config
    from amage_core.train.cv import VAL_PREDICTIONS, blend_weights
    from amage_core.train.scaler import AgeScaler

    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 40)
    fmri, smri = age + rng.normal(0, 8, 40), age + rng.normal(0, 2, 40)
    blend = {}
    for branch, pred in (("fmri", fmri), ("structural", smri)):
        fold = tmp_path / branch / "fold-0"
        fold.mkdir(parents=True)
        pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(40)], "age": age,
                      "predicted_age": pred}).to_csv(fold / VAL_PREDICTIONS, sep="\t", index=False)
        blend[branch] = SimpleNamespace(path=tmp_path / branch)
    ids = {f"sub-{i}" for i in range(40)}
    fit = blend_weights([blend], "0", fit_ids=ids | {"sub-other"})
    assert fit == blend_weights([blend], "0")
    with pytest.raises(ValueError, match="does not train on"):     # held out of another fold's training
        blend_weights([blend], "0", fit_ids=ids - {"sub-3"})
    # pairs holding out other parts (cross-fitting): the weights are fit on all their participants
    halves = []
    for half in (slice(0, 20), slice(20, 40)):
        pair = {}
        for branch, pred in (("fmri", fmri), ("structural", smri)):
            fold = tmp_path / f"{branch}-{half.start}" / "fold-0"
            fold.mkdir(parents=True)
            pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(40)][half], "age": age[half],
                          "predicted_age": pred[half]}).to_csv(fold / VAL_PREDICTIONS, sep="\t", index=False)
            pair[branch] = SimpleNamespace(path=fold.parent)
        halves.append(pair)
    pooled = blend_weights(halves, "0", fit_ids=ids)
    assert pooled["n"] == 40 and pooled["source"] == "validation predictions of 2 pair(s) of blend runs"
    assert {k: pooled[k] for k in ("w_fmri", "w_structural", "intercept_years")} == pytest.approx(
        {k: fit[k] for k in ("w_fmri", "w_structural", "intercept_years")})
    with pytest.raises(ValueError, match="hold out some participants twice"):
        blend_weights([blend, halves[0]], "0")
    assert fit["n"] == 40 and fit["w_structural"] > 0.8 and fit["w_fmri"] < 0.2      # trusts the better branch
    x = np.c_[fmri, smri]
    combined = x @ [fit["w_fmri"], fit["w_structural"]] + fit["intercept_years"]
    assert np.mean(np.abs(combined - age)) <= np.mean(np.abs(smri - age)) + 0.05
    # a branch whose predictions barely vary is weighed, never stretched (unbounded: weight ~20)
    flat = age.mean() + 0.05 * (age - age.mean()) + rng.normal(0, 0.05, 40)
    pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(40)], "age": age, "predicted_age": flat}
                 ).to_csv(tmp_path / "structural" / "fold-0" / VAL_PREDICTIONS, sep="\t", index=False)
    stretched = blend_weights([blend], "0")
    assert stretched["w_structural"] == pytest.approx(1.0) and 0 <= stretched["w_fmri"] <= 1

    spec = InputSpec(n_roi=12, node_features=12, t1_shape=(16, 16, 16))
    model = build_model(tiny_config("amagenet"), spec).eval()
    scaler = AgeScaler.fit(age, [str(i) for i in range(40)])
    model.set_late_weights(fit, scaler)
    assert not model.late.weight.requires_grad and not model.late.bias.requires_grad
    out = model(random_batch(spec, 4, seed=0))
    branches_years = scaler.inverse(out.branches.detach().numpy())
    late_years = scaler.inverse((out.pred - model.head(out.embedding)).detach().numpy())
    expected = branches_years @ [fit["w_fmri"], fit["w_structural"]] + fit["intercept_years"]
    np.testing.assert_allclose(late_years, expected, rtol=1e-4, atol=1e-3)
