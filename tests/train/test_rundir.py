"""Reading a finished run: each fold's split, scaler, bias correction and model, without parsing files."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amage_core import baselines
from amage_core.config import GraphConfig, ModelConfig, TrainConfig
from amage_core.data.cohort import subset
from amage_core.evaluate.bias import BiasCorrection
from amage_core.train import rundir
from amage_core.train.cv import cross_validate
from amage_core.train.scaler import AgeScaler
from amage_core.train.splits import participant_keys
from train_fixtures import make_cohort, tiny_factory

CFG = TrainConfig(epochs=3, batch_size=8, lr=0.01, folds=3, seed=0, val_fraction=0.2, device="cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rundir")
    cohort = make_cohort(tmp / "cohort")
    deep = cross_validate(cohort, ModelConfig(), CFG, GraphConfig(sparsify="topk", topk=3), tmp / "deep",
                          build=tiny_factory(), progress=False)
    ridge = baselines.run_baseline("ridge-table", cohort, CFG, tmp / "ridge", progress=False)
    return cohort, deep, ridge


def test_fold_readers_give_what_the_fold_wrote(runs):
    cohort, deep, _ = runs
    assert rundir.run_fold_names(deep) == ["0", "1", "2"]
    assert rundir.run_config(deep)["config_hash"] == json.loads((deep.path / "done.json").read_text())["config_hash"]
    for fold in ("0", "1", "2"):
        folder = deep.path / f"fold-{fold}"
        scaler = rundir.fold_scaler(deep, fold)
        assert isinstance(scaler, AgeScaler)
        assert scaler == AgeScaler.from_dict(json.loads((folder / "scaler.json").read_text()))
        bias = rundir.fold_bias(deep.path, fold)
        assert isinstance(bias, BiasCorrection) and bias.to_dict() == json.loads((folder / "bias.json").read_text())
        rows = rundir.fold_rows(deep, fold, cohort)
        ids = cohort.participants["participant_id"].astype(str).to_numpy()
        assert set(ids[rows]) == rundir.fold_roles(deep, fold)["test"]
        assert set(deep.predictions.loc[deep.predictions["fold"] == fold, "participant_id"]) == set(ids[rows])


def test_fold_predict_reproduces_the_runs_predictions(runs):
    cohort, deep, _ = runs
    by_id = deep.predictions.set_index("participant_id")
    for fold in rundir.run_fold_names(deep):
        rows = rundir.fold_rows(deep, fold, cohort)
        predicted, gate = rundir.fold_predict(deep, fold, cohort, rows, CFG, build=tiny_factory())
        ids = cohort.participants["participant_id"].astype(str).to_numpy()[rows]
        expected = by_id.loc[ids]
        np.testing.assert_allclose(predicted, expected["predicted_age"], rtol=1e-12)
        # the gate is float32, written with float32's shortest digits
        np.testing.assert_array_equal(gate[:, 0], expected["gate_0"].to_numpy().astype(np.float32))
        keys = participant_keys(cohort.participants, rows)
        corrected = rundir.fold_bias(deep, fold).apply(predicted, expected["age"].to_numpy(), keys)
        np.testing.assert_allclose(corrected, expected["predicted_age_corrected"], rtol=1e-12)
        model = rundir.fold_model(deep, fold, cohort, build=tiny_factory())
        assert not model.training                     # ready to predict: eval mode


def test_a_baseline_fold_is_refit_on_its_training_participants(runs):
    cohort, _, ridge = runs
    assert rundir.fold_scaler(ridge, "0") is None      # baselines scale nothing
    with pytest.raises(ValueError, match="pass the training cohort"):
        rundir.fold_predict(ridge, "0", cohort, np.arange(3))
    by_id = ridge.predictions.set_index("participant_id")
    for fold in rundir.run_fold_names(ridge):
        rows = rundir.fold_rows(ridge, fold, cohort)
        # another cohort object (a subset holding the same participants) is predicted the same way
        target = subset(cohort, rows, "test rows")
        predicted, gate = rundir.fold_predict(ridge, fold, target, np.arange(target.n), training=cohort)
        ids = cohort.participants["participant_id"].astype(str).to_numpy()[rows]
        assert gate is None
        np.testing.assert_allclose(predicted, by_id.loc[ids, "predicted_age"], rtol=1e-6)


def test_fold_rows_names_participants_missing_from_the_cohort(runs):
    cohort, deep, _ = runs
    others = subset(cohort, np.arange(5), "first five")
    with pytest.raises(ValueError, match="are not in the cohort"):
        rundir.fold_rows(deep, "0", others)


def test_read_predictions_reads_a_run_its_folder_or_file_alike(runs):
    _, deep, _ = runs
    tables = [rundir.read_predictions(x) for x in (deep, deep.path, deep.path / "predictions.tsv", str(deep.path))]
    for t in tables:
        pd.testing.assert_frame_equal(t, tables[0])
    assert all(isinstance(v, str) for c in ("participant_id", "fold") for v in tables[0][c])
    assert rundir.read_predictions(deep.predictions) is deep.predictions


def test_fold_fit_and_validation_predictions(runs):
    _, deep, ridge = runs
    roles = rundir.fold_roles(deep, "0")
    assert rundir.fold_fit(deep, "0")["n_fit"] == len(roles["fit"])
    val = rundir.fold_val_predictions(deep, "0")
    assert list(val.columns) == ["participant_id", "age", "predicted_age"]
    assert set(val["participant_id"]) == roles["val"]
    with pytest.raises(ValueError, match="no validation split"):
        rundir.fold_val_predictions(ridge, "0")
