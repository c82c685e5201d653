import numpy as np
import pandas as pd
import pytest
import torch

from amage_core.config import GraphConfig, TrainConfig
from amage_core.data.cohort import write_cohort
from amage_core.interpret import attributions, regions
from amage_core.models import build_model
from amage_core.models.testing import TINY_NETWORKS, TINY_T1_SHAPE, random_batch, tiny_config, tiny_spec


def test_integrated_gradients_are_complete():
    """IG sums to f(x) - f(baseline) (the completeness axiom), per input field, up to the Riemann error."""
    torch.manual_seed(0)
    spec = tiny_spec()
    model = build_model(tiny_config("fmri"), spec).eval()
    batch = random_batch(spec, batch_size=3, seed=1)
    ig = attributions.integrated_gradients(model, batch, ("x",), steps=64)["x"]
    with torch.no_grad():
        full = model(batch).pred.sum()
        x = batch.x
        batch.x = torch.zeros_like(x)
        empty = model(batch).pred.sum()
        batch.x = x
    assert ig.shape == batch.x.shape
    assert float(ig.sum()) == pytest.approx(float(full - empty), rel=0.05, abs=1e-3)


def test_sphere_means_average_the_right_voxels():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -10, -10]
    shape = (11, 11, 11)
    x_mm = (np.arange(11) * 2.0 - 10)[:, None, None] * np.ones(shape)
    volumes = np.stack([x_mm, 2 * x_mm])
    coords = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    means = attributions.sphere_means(volumes, affine, coords, radius=3.0)
    assert means[:, 0] == pytest.approx([0.0, 0.0])
    assert means[:, 1] == pytest.approx([6.0, 12.0])
    assert np.isnan(means[:, 2]).all()  # outside the grid


def _truth(n=60, seed=0):
    rng = np.random.default_rng(seed)
    effect = rng.uniform(0, 1, n)
    return pd.DataFrame({"name": [f"r{i}" for i in range(n)], "network": "n",
                         "smri_hotspot": effect > 0.7, "smri_gm_loss_per_decade": effect,
                         "fmri_loading_decline_per_decade": effect})


def test_truth_agreement_separates_informative_from_random_rankings():
    truth = _truth()
    rng = np.random.default_rng(1)
    good = truth[["name", "network"]].assign(**{"T1 IG": truth.smri_gm_loss_per_decade + rng.normal(0, 0.05, 60)})
    bad = truth[["name", "network"]].assign(**{"T1 IG": rng.normal(size=60)})
    g = regions.truth_agreement(good, truth).loc["T1 IG"]
    b = regions.truth_agreement(bad, truth).loc["T1 IG"]
    assert g.AUROC > 0.95 and g.AUROC > g["random AUROC (95th pct)"] and g["Spearman with effect size"] > 0.9
    assert b.AUROC < b["random AUROC (95th pct)"]


def test_truth_agreement_needs_matching_regions():
    with pytest.raises(ValueError, match="atlas"):
        regions.truth_agreement(pd.DataFrame({"name": ["x"], "network": ["n"], "T1 IG": [1.0]}), _truth())


def test_fold_stability():
    values = np.tile(np.arange(10.0), (6, 1))
    same = attributions.Attributions([str(i) for i in range(6)], ["0", "0", "1", "1", "2", "2"], {"roi_ig": values})
    assert regions.fold_stability(same, "roi_ig") == pytest.approx(1.0)
    assert regions.fold_stability(same, "t1_ig_region") is None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny cohort whose first ROIs and the T1 centre carry age, and a 2-fold run of AMAge-Net."""
    from amage_core.train.cv import cross_validate

    root = tmp_path_factory.mktemp("interp")
    rng = np.random.default_rng(0)
    n, r = 24, len(TINY_NETWORKS)
    age = rng.uniform(20, 80, n)
    u = np.where(np.arange(r) < r // 2, 1.0, -1.0)
    fc = 0.3 * np.outer(u, u)[None] * ((age - 50) / 30)[:, None, None] + rng.normal(0, 0.1, (n, r, r))
    fc = (fc + fc.transpose(0, 2, 1)) / 2
    t1 = rng.normal(0, 0.2, (n, *TINY_T1_SHAPE)) + ((age - 50) / 30)[:, None, None, None]
    participants = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)], "age": age,
                                 "sex": np.where(np.arange(n) % 2, "M", "F")})
    names = [f"roi{i}" for i in range(r)]
    region_table = pd.DataFrame({"index": range(r), "name": names, "network": [f"net{k}" for k in TINY_NETWORKS],
                                 "x": np.linspace(-20, 20, r), "y": 0.0, "z": 0.0})
    cohort = write_cohort(root / "cohort", participants, connectivity=fc, t1=t1, regions=region_table)
    cfg = TrainConfig(epochs=2, batch_size=8, folds=2, val_fraction=0.25, seed=0, early_stopping_patience=5)
    run = cross_validate(cohort, tiny_config("amagenet"), cfg, GraphConfig(topk=4), root / "run", progress=False)
    return cohort, run


def test_compute_explains_every_participant_once_out_of_sample(tiny_run):
    cohort, run = tiny_run
    grid = np.diag([4.0, 4.0, 4.0, 1.0])
    grid[:3, 3] = -30
    attr = attributions.compute(run, cohort, GraphConfig(topk=4), grid, radius=6.0, steps=4)
    assert sorted(attr.participant_id) == sorted(cohort.participants.participant_id)
    folds = pd.read_csv(run.path / "folds.tsv", sep="\t", dtype=str).set_index("participant_id")["fold"]
    assert all(folds[p] == f for p, f in zip(attr.participant_id, attr.fold))  # explained by its test fold
    n, r = cohort.n, cohort.regions.shape[0]
    assert attr.get("roi_ig").shape == (n, r) and attr.get("t1_ig_region").shape == (n, r)
    assert attr.get("t1_ig").shape == TINY_T1_SHAPE and (attr.get("t1_ig") >= 0).all()
    assert attr.get("gate").shape[0] == n and ((attr.get("gate") > 0) & (attr.get("gate") < 1)).all()
    again = attributions.compute(run, cohort, GraphConfig(topk=4), grid, radius=6.0, steps=4)  # cached
    assert np.array_equal(again.get("roi_ig"), attr.get("roi_ig"))
    table = regions.region_table(attr, cohort.regions)
    assert {"fMRI IG", "T1 IG"} <= set(table.columns) and len(regions.network_table(table)) == 3
