"""Classical brain-age baselines (scikit-learn) on the same folds, in the same run-directory format.

=================  ===========================================================================
name               model (fit on the training fold only; hyper-parameters by inner CV there)
=================  ===========================================================================
``ridge-fc``       standardised connectivity upper triangle -> ``RidgeCV``
``svr-fc``         standardised connectivity upper triangle -> RBF ``SVR`` (C by inner 5-fold CV)
``brainage-gpr``   brainageR-like: block-averaged T1 voxels -> PCA -> Gaussian process regression
                   with a linear (dot-product) kernel plus noise, as brainageR's ``gausspr``
``ridge-table``    standardised structural table -> ``RidgeCV``
``stacking``       Engemann et al. 2020: one model per available modality (ridge on connectivity,
                   the GPR on T1, ridge on the table); their out-of-fold predictions inside the
                   training fold feed a random forest (``StackingRegressor``)
=================  ===========================================================================

Folds come from :func:`amage_core.train.cv.plan_folds` with the same ``TrainConfig`` (folds, seed,
age bins), so a baseline and a deep run with the same settings test on the same participants; pass
``assignment`` (a run's ``folds.tsv``) to impose folds. The bias correction is fit on out-of-fold
predictions inside the training fold (5-fold ``cross_val_predict``). The run directory holds
config.json, folds.tsv, predictions.tsv, metrics.json and fold-<k>/ (predictions, split, bias,
fit); no checkpoint (scikit-learn models would need pickle).
"""
from __future__ import annotations

import contextlib

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from amage_core.config import TrainConfig, baseline_settings
from amage_core.evaluate.bias import BiasCorrection
from amage_core.io import stable_hash
from amage_core.train.cv import fold_names, outer_rows, plan_folds
from amage_core.train.rundir import (RunDir, RunResult, cohort_identity, has_sessions,
                                     prediction_table, split_table)
from amage_core.train.splits import participant_keys

if TYPE_CHECKING:
    from sklearn.base import RegressorMixin

    from amage_core.data.cohort import PreparedCohort

BASELINES: dict[str, str] = {
    "ridge-fc": "ridge regression on the connectivity upper triangle",
    "svr-fc": "RBF support-vector regression on the connectivity upper triangle",
    "brainage-gpr": "brainageR-like: downsampled T1 -> PCA -> Gaussian process regression",
    "ridge-table": "ridge regression on the structural table",
    "stacking": "per-modality models stacked by a random forest (Engemann et al. 2020)",
}
# which prepared-cohort features each single-modality baseline reads
_FEATURES = {"ridge-fc": "fmri", "svr-fc": "fmri", "brainage-gpr": "smri", "ridge-table": "table"}
_STACK_BASE = {"fmri": "ridge-fc", "smri": "brainage-gpr", "table": "ridge-table"}

RIDGE_ALPHAS = np.logspace(-3, 5, 17)
SVR_C = (1.0, 10.0, 100.0)
PCA_VARIANCE = (0.8, 0.9, 0.95, 0.99)   # T1 variance the PCA keeps: chosen by inner CV on the training fold
STACKED_PCA_VARIANCE = 0.9              # ... fixed inside stacking (see make_estimator)
T1_MAX_VOXELS = 20_000        # T1 block-averaged until it has at most this many voxels
INNER_FOLDS = 5
FOREST_TREES = 200


def features(cohort: PreparedCohort, modality: str) -> np.ndarray:
    """(N, P) float64 features of one modality.

    ``fmri``: the upper triangle of each connectivity matrix (R (R - 1) / 2 values); ``smri``: the
    T1 volume averaged over cubic blocks (see :func:`t1_block_size`), flattened; ``table``: as is.
    """
    if modality == "fmri":
        # not nilearn's sym_matrix_to_vec: it reads the lower triangle, another column order, which
        # moves ridge and SVR predictions in the 14th digit (results would differ from earlier runs)
        iu = np.triu_indices(cohort.connectivity.shape[1], k=1)
        return np.stack([np.asarray(m)[iu] for m in cohort.connectivity]).astype(np.float64)
    if modality == "smri":
        block = t1_block_size(cohort.t1.shape[1:])
        return np.stack([_block_mean(np.asarray(v, dtype=np.float64), block).ravel()
                         for v in cohort.t1])
    if modality == "table":
        return np.asarray(cohort.tables, dtype=np.float64)
    raise ValueError(f"unknown modality {modality!r}")


def t1_block_size(shape: tuple[int, ...]) -> int:
    """Smallest cubic block so the block-averaged grid has at most ``T1_MAX_VOXELS`` voxels."""
    block = 1
    while math.prod(math.ceil(s / block) for s in shape) > T1_MAX_VOXELS:
        block += 1
    return block


def _block_mean(volume: np.ndarray, block: int) -> np.ndarray:
    """(D, H, W) -> (ceil(D/b), ceil(H/b), ceil(W/b)): means over b^3 blocks (edge-padded)."""
    if block == 1:
        return volume
    pad = [(0, -s % block) for s in volume.shape]
    v = np.pad(volume, pad, mode="edge")
    d, h, w = (s // block for s in v.shape)
    return v.reshape(d, block, h, block, w, block).mean(axis=(1, 3, 5))


def make_estimator(name: str, seed: int, blocks: dict[str, slice] | None = None,
                   search: bool = True) -> RegressorMixin:
    """The unfitted scikit-learn estimator of baseline ``name``.

    ``blocks`` (stacking only): modality -> columns of the concatenated feature matrix.
    ``search`` (brainage-gpr): choose the PCA variance by inner CV; stacking's T1 model keeps the
    middle of the grid instead (a grid search nested in stacking's own CV cost ~1,400 PCA fits).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestRegressor, StackingRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import DotProduct, WhiteKernel
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    inner = KFold(INNER_FOLDS, shuffle=True, random_state=seed)
    if name in ("ridge-fc", "ridge-table"):
        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    if name == "svr-fc":
        search = GridSearchCV(SVR(kernel="rbf", gamma="scale"), {"C": list(SVR_C)}, cv=inner,
                              scoring="neg_mean_absolute_error")
        return make_pipeline(StandardScaler(), search)
    if name == "brainage-gpr":
        # linear kernel (the constant term fixed: PCA scores are centred) + fitted noise level
        kernel = DotProduct(sigma_0=1.0, sigma_0_bounds="fixed") + WhiteKernel(noise_level_bounds=(1e-6, 1e3))
        gpr = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)
        if not search:
            return make_pipeline(PCA(n_components=STACKED_PCA_VARIANCE, svd_solver="full"), gpr)
        pipeline = make_pipeline(PCA(svd_solver="full"), gpr)
        return GridSearchCV(pipeline, {"pca__n_components": list(PCA_VARIANCE)}, cv=inner,
                            scoring="neg_mean_absolute_error")
    if name == "stacking":
        if not blocks:
            raise ValueError("stacking needs the column block of each modality")
        base = [(m, make_pipeline(ColumnTransformer([(m, "passthrough", cols)]),
                                  make_estimator(_STACK_BASE[m], seed, search=False)))
                for m, cols in blocks.items()]
        forest = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed)
        return StackingRegressor(base, final_estimator=forest, cv=inner)
    raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")


def _design(name: str, cohort: PreparedCohort) -> tuple[np.ndarray, dict[str, slice] | None]:
    """(N, P) feature matrix of ``name`` and, for stacking, each modality's column block."""
    if name in _FEATURES:
        modality = _FEATURES[name]
        if modality not in cohort.modalities:
            raise ValueError(f"baseline {name!r} needs {modality} data; the prepared cohort at "
                             f"{cohort.root} has {sorted(cohort.modalities)}")
        return features(cohort, modality), None
    present = [m for m in _STACK_BASE if m in cohort.modalities]
    if not present:
        raise ValueError(f"stacking found no modality in the prepared cohort at {cohort.root}")
    mats = [features(cohort, m) for m in present]
    edges = np.cumsum([0] + [m.shape[1] for m in mats])
    return np.hstack(mats), {m: slice(int(a), int(b)) for m, a, b in zip(present, edges, edges[1:])}


def run_baseline(name: str, cohort: PreparedCohort, train_cfg: TrainConfig, out: Path | str,
                 test_cohort: PreparedCohort | None = None, resume: bool = False,
                 progress: bool = True, folds: list[str | int] | None = None,
                 assignment: pd.DataFrame | None = None) -> RunResult:
    """Cross-validate (or cross-cohort test, a fold ensemble) baseline ``name``; write and return the run.

    Arguments as :func:`amage_core.train.cv.cross_validate`; ``train_cfg`` supplies the folds,
    seed, age bins and bias-correction method (the baselines always follow the nested protocol).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    if train_cfg.protocol != "nested":
        raise ValueError("the baselines follow the nested protocol only")
    run = RunDir(out)
    fold_table = plan_folds(cohort, train_cfg, test_cohort, assignment)
    identity = {
        "kind": "baseline", "variant": name, "protocol": "nested",
        "train": baseline_settings(train_cfg),
        "data": cohort_identity(cohort), "test_data": cohort_identity(test_cohort),
        "folds": stable_hash(fold_table.to_numpy().tolist()),
        "settings": {"ridge_alphas": RIDGE_ALPHAS.tolist(), "svr_c": list(SVR_C),
                     "pca_variance": PCA_VARIANCE, "stacked_pca_variance": STACKED_PCA_VARIANCE, "t1_max_voxels": T1_MAX_VOXELS,
                     "inner_folds": INNER_FOLDS, "forest_trees": FOREST_TREES},
    }
    names = fold_names(fold_table)
    if run.is_done(stable_hash(identity)):
        return run.load()
    config_hash = run.start(identity, {
        "data_path": str(cohort.root),
        "test_data_path": str(test_cohort.root) if test_cohort is not None else None,
        "seeds": {"folds": train_cfg.seed, "models": train_cfg.seed}})
    run.write_folds(fold_table)
    selected = names if folds is None else [str(f) for f in folds]
    unknown = sorted(set(selected) - set(names))
    if unknown:
        raise ValueError(f"no fold named {unknown}; folds: {names}")

    x_train_all, blocks = _design(name, cohort)
    x_test_all = x_train_all if test_cohort is None else _design(name, test_cohort)[0]
    if x_test_all.shape[1] != x_train_all.shape[1]:
        raise ValueError(f"the test cohort has {x_test_all.shape[1]} features, the training cohort "
                         f"{x_train_all.shape[1]}: not compatible")
    # TrainConfig.cpu_threads caps the BLAS/OpenMP threads as it caps torch's (0: the libraries' own)
    limit = threadpool_limits(limits=train_cfg.cpu_threads) if train_cfg.cpu_threads else contextlib.nullcontext()
    with limit:
        for fold in tqdm(selected, desc=name, unit="fold", disable=not progress):
            if resume and run.fold_done(fold, config_hash):
                continue
            _fit_fold(name, run, config_hash, fold, cohort, fold_table, test_cohort, train_cfg, blocks,
                      x_train_all, x_test_all)
    return run.finish(names, config_hash, ensemble=test_cohort is not None)


def _fit_fold(name: str, run: RunDir, config_hash: str, fold: str, cohort: PreparedCohort,
              fold_table: pd.DataFrame, test_cohort: PreparedCohort | None, train_cfg: TrainConfig,
              blocks, x_train_all: np.ndarray, x_test_all: np.ndarray) -> None:
    """Fit baseline ``name`` on one outer fold (bias correction out-of-fold) and write the fold."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_predict

    source = test_cohort if test_cohort is not None else cohort
    part, test_part = cohort.participants, source.participants
    ages = part["age"].to_numpy(dtype=float)
    train_rows, test_rows = outer_rows(cohort, fold_table, fold, test_cohort, train_cfg)
    estimator = make_estimator(name, train_cfg.seed, blocks)
    x_train, y_train = x_train_all[train_rows], ages[train_rows]
    oof = cross_val_predict(clone(estimator), x_train, y_train,
                            cv=KFold(INNER_FOLDS, shuffle=True, random_state=train_cfg.seed))
    bias = BiasCorrection.fit(y_train, oof, participant_keys(part, train_rows),
                              train_cfg.bias_method, "out-of-fold")
    estimator.fit(x_train, y_train)
    predicted = estimator.predict(x_test_all[test_rows])
    test_ages = test_part["age"].to_numpy(dtype=float)[test_rows]
    corrected = bias.apply(predicted, test_ages, participant_keys(test_part, test_rows))
    table = prediction_table(test_part, test_rows, fold, predicted, corrected,
                             with_session=has_sessions(test_part))
    roles = split_table([("fit", part, train_rows), ("test", test_part, test_rows)])
    record = {"n_fit": int(len(train_rows)), "n_test": int(len(test_rows)),
              "oof_mae": float(np.mean(np.abs(oof - y_train))), **_fitted_settings(estimator)}
    run.write_fold(fold, config_hash, table, roles, {"bias": bias.to_dict(), "fit": record})


def refit_fold(run, fold: str | int, training: PreparedCohort, cohort: PreparedCohort,
               rows: np.ndarray) -> np.ndarray:
    """Ages predicted for ``rows`` of ``cohort`` by fold ``fold`` of baseline run ``run`` (a
    :class:`~amage_core.train.rundir.RunResult` or its folder). No fitted estimator is kept (it would
    need pickle): the run's estimator is refit on the fold's training participants of ``training``
    (the cohort the run was trained on) with the run's seed, as :func:`run_baseline` fit it. The
    ages it is refit on are the cohort's float32 array (as the ABIDE chapter's autism predictions
    have always been made), so it matches the run's fit to about 1e-6 years, not bitwise.
    Use :func:`amage_core.train.rundir.fold_predict` rather than this directly."""
    from amage_core.train.rundir import fold_rows, run_config

    config = run_config(run)
    name, seed = config["variant"], config["train"]["seed"]
    train_rows = np.sort(fold_rows(run, fold, training, "fit"))
    x_train, blocks = _design(name, training)
    x_test, _ = _design(name, cohort)
    estimator = make_estimator(name, seed, blocks)
    estimator.fit(x_train[train_rows], training.ages.astype(float)[train_rows])
    return estimator.predict(x_test[np.asarray(rows, dtype=np.int64)])


def _fitted_settings(estimator) -> dict:
    """Hyper-parameters chosen inside the training fold (ridge alpha, SVR C, PCA components)."""
    from sklearn.decomposition import PCA
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    found: dict = {}
    if isinstance(estimator, GridSearchCV):
        found.update({k: float(v) for k, v in estimator.best_params_.items()})
        estimator = estimator.best_estimator_
    steps = estimator.steps if isinstance(estimator, Pipeline) else []
    for _, step in steps:
        if isinstance(step, RidgeCV):
            found["alpha"] = float(step.alpha_)
        elif isinstance(step, GridSearchCV):
            found.update({k: float(v) for k, v in step.best_params_.items()})
        elif isinstance(step, PCA):
            found["pca_components"] = int(step.n_components_)
        elif isinstance(step, GaussianProcessRegressor):
            found["kernel"] = str(step.kernel_)
    return found
