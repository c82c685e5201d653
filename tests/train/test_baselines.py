"""Classical baselines: same folds and same run-directory outputs as the deep models."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amage_core import baselines
from amage_core.config import GraphConfig, ModelConfig, TrainConfig
from amage_core.train.command import BASELINE_NAMES
from amage_core.train.cv import cross_validate
from train_fixtures import make_cohort, tiny_factory

CFG = TrainConfig(epochs=1, batch_size=8, folds=3, seed=0, val_fraction=0.2, device="cpu")
COLUMNS = ["participant_id", "fold", "age", "predicted_age", "predicted_age_corrected"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("baselines") / "cohort")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_baseline_writes_the_run_format_and_learns(name, cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(baselines, "FOREST_TREES", 20)     # keep the stacking test fast
    monkeypatch.setattr(baselines, "INNER_FOLDS", 3)
    result = baselines.run_baseline(name, cohort, CFG, tmp_path / name, progress=False)
    assert result.complete
    pred = pd.read_csv(tmp_path / name / "predictions.tsv", sep="\t", dtype={"fold": str})
    assert list(pred.columns) == COLUMNS and len(pred) == cohort.n
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    assert set(metrics) == {"n", "folds", "uncorrected", "corrected"}
    # the inputs carry a strong linear age signal: far better than guessing the mean age (~15 y)
    assert metrics["uncorrected"]["pooled"]["mae"] < 6.0
    for k in range(3):
        split = pd.read_csv(tmp_path / name / f"fold-{k}" / "split.tsv", sep="\t")
        test_keys = {f"camcan-like/{p}" for p in split.loc[split["role"] == "test", "participant_id"]}
        bias = json.loads((tmp_path / name / f"fold-{k}" / "bias.json").read_text())
        assert bias["source"] == "out-of-fold" and not set(bias["fitted_on"]) & test_keys


def test_baselines_and_deep_models_share_folds(cohort, tmp_path):
    deep = cross_validate(cohort, ModelConfig(), CFG, GraphConfig(topk=3), tmp_path / "deep",
                          build=tiny_factory(), progress=False)
    ridge = baselines.run_baseline("ridge-table", cohort, CFG, tmp_path / "ridge", progress=False)
    read = lambda r: pd.read_csv(r.path / "folds.tsv", sep="\t")  # noqa: E731
    pd.testing.assert_frame_equal(read(deep), read(ridge))
    again = baselines.run_baseline("ridge-table", cohort, CFG, tmp_path / "ridge", progress=False)
    assert again.reused


def test_a_training_fraction_trains_every_model_on_the_same_subset_and_tests_everyone(cohort, tmp_path):
    """train_fraction: each training fold is subsampled (stratified, seeded by the outer folds), the
    same participants for a deep model, its other training seeds and a baseline; the test folds
    stay whole; the size table reads the runs back."""
    from dataclasses import replace

    from amage_core.train.diagnostics import size_table

    half = replace(CFG, train_fraction=0.5)
    runs = {("deep", 0.5): cross_validate(cohort, ModelConfig(), half, GraphConfig(topk=3), tmp_path / "deep",
                                          build=tiny_factory(), progress=False),
            ("deep-seed", 0.5): cross_validate(cohort, ModelConfig(), replace(half, seed=1000, fold_seed=0),
                                               GraphConfig(topk=3), tmp_path / "seed", build=tiny_factory(),
                                               progress=False),
            ("ridge-table", 0.5): baselines.run_baseline("ridge-table", cohort, half, tmp_path / "ridge",
                                                         progress=False),
            ("ridge-table", 1.0): baselines.run_baseline("ridge-table", cohort, CFG, tmp_path / "all",
                                                         progress=False)}

    def roles(run, k):
        split = pd.read_csv(run.path / f"fold-{k}" / "split.tsv", sep="\t", dtype=str)
        return (set(split.loc[split["role"].isin(["fit", "val"]), "participant_id"]),
                set(split.loc[split["role"] == "test", "participant_id"]))

    for k in range(3):
        trained, tested = roles(runs["ridge-table", 1.0], k)
        sub, sub_tested = roles(runs["ridge-table", 0.5], k)
        assert sub_tested == tested and sub < trained and abs(len(sub) - len(trained) / 2) <= 1
        assert all(roles(runs[key], k) == (sub, tested) for key in (("deep", 0.5), ("deep-seed", 0.5)))
    table = size_table(runs).set_index(["model", "fraction"])
    assert table.loc[("ridge-table", 1.0), "n_train"] > table.loc[("ridge-table", 0.5), "n_train"]
    assert (table["n_test"] == cohort.n).all()
    with pytest.raises(Exception, match="train_fraction"):
        TrainConfig(train_fraction=0.0)


def test_cross_cohort_baseline_and_feature_checks(cohort, tmp_path):
    other = make_cohort(tmp_path / "other", n=12, seed=3, name="oasis3-like", age_range=(60, 90))
    result = baselines.run_baseline("ridge-fc", cohort, CFG, tmp_path / "run", test_cohort=other,
                                    progress=False)
    assert set(result.predictions["fold"]) == {"external"} and len(result.predictions) == 12
    folds = [pd.read_csv(result.path / f"fold-{k}" / "predictions.tsv", sep="\t") for k in range(CFG.folds)]
    np.testing.assert_allclose(result.predictions["predicted_age"],   # the mean of the fold models
                               np.mean([f["predicted_age"] for f in folds], axis=0))
    cohort_without_t1 = make_cohort(tmp_path / "no-t1", n=12)
    cohort_without_t1.t1 = None
    with pytest.raises(ValueError, match="smri"):
        baselines.run_baseline("brainage-gpr", cohort_without_t1, CFG, tmp_path / "gpr", progress=False)


def test_block_mean_downsampling():
    volume = np.arange(4 * 4 * 2, dtype=float).reshape(4, 4, 2)
    out = baselines._block_mean(volume, 2)
    assert out.shape == (2, 2, 1) and out[0, 0, 0] == volume[:2, :2, :2].mean()
    assert baselines.t1_block_size((128, 128, 128)) == 5       # 26^3 = 17576 <= 20000 voxels


def test_cli_knows_every_baseline():
    assert set(BASELINE_NAMES) == set(baselines.BASELINES)


def test_cpu_threads_caps_the_blas_threads_of_a_baseline(cohort, tmp_path, monkeypatch):
    from sklearn.base import BaseEstimator, RegressorMixin
    from threadpoolctl import threadpool_info

    from amage_core.config import replace

    seen = []

    class Recording(RegressorMixin, BaseEstimator):
        """A mean predictor recording the BLAS thread counts in force while it fits."""

        def fit(self, x, y):
            seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
            self.mean_ = float(np.mean(y))
            return self

        def predict(self, x):
            return np.full(len(x), self.mean_)

    monkeypatch.setattr(baselines, "make_estimator", lambda *a: Recording())
    monkeypatch.setattr(baselines, "INNER_FOLDS", 3)
    baselines.run_baseline("ridge-fc", cohort, replace(CFG, cpu_threads=1), tmp_path / "capped", progress=False)
    assert seen and all(s == {1} for s in seen)
