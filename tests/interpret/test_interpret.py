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


def test_integrated_gradients_report_captums_convergence_delta():
    """The delta is, per participant, the attributions' sum minus f(input) - f(zero baseline)."""
    torch.manual_seed(0)
    spec = tiny_spec()
    model = build_model(tiny_config("amagenet"), spec).eval()
    batch = random_batch(spec, batch_size=3, seed=1)
    ig, delta = attributions.integrated_gradients(model, batch, ("x", "t1"), steps=8, return_delta=True)
    assert ig["x"].shape == batch.x.shape and ig["t1"].shape == batch.t1.shape and delta.shape == (3,)
    with torch.no_grad():
        full = model(batch).pred
        x, t1 = batch.x, batch.t1
        batch.x, batch.t1 = torch.zeros_like(x), torch.zeros_like(t1)
        empty = model(batch).pred
        batch.x, batch.t1 = x, t1
    total = ig["x"].reshape(3, -1).sum(1) + ig["t1"].reshape(3, -1).sum(1)
    np.testing.assert_allclose(delta.numpy(), (total - (full - empty)).numpy(), atol=1e-6)
    table = regions.convergence_table({"run": attributions.Attributions(
        ["a", "b", "c"], ["0", "0", "1"], {"ig_delta": delta.numpy(), "ig_change": (full - empty).numpy()}),
        "older set": attributions.Attributions(["a"], ["0"], {})})
    assert list(table.index) == ["run"] and table.loc["run", "participants"] == 3
    assert table.loc["run", "max |delta|"] == pytest.approx(float(delta.abs().max()))


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


def test_auroc_and_its_permutation_null_are_sklearns():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    score = np.round(rng.normal(size=60), 1)                  # rounded: many ties
    score[[4, 9]] = np.nan                                    # dropped, as before
    truth = rng.random(60) < 0.3
    auc, p95 = regions._auroc_vs_random(score, truth, 200, np.random.default_rng(5))
    ok = np.isfinite(score)
    draws = np.random.default_rng(5)
    null = [roc_auc_score(truth[ok], draws.permutation(score[ok])) for _ in range(200)]
    assert auc == pytest.approx(roc_auc_score(truth[ok], score[ok]), abs=1e-12)
    assert p95 == pytest.approx(np.percentile(null, 95), abs=1e-12)


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
    cfg = TrainConfig(epochs=2, batch_size=8, folds=2, val_fraction=0.25, seed=0)
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
    assert attr.get("ig_delta").shape == (n,) and attr.get("ig_change").shape == (n,)
    again = attributions.compute(run, cohort, GraphConfig(topk=4), grid, radius=6.0, steps=4)  # cached
    assert np.array_equal(again.get("roi_ig"), attr.get("roi_ig"))
    table = regions.region_table(attr, cohort.regions)
    assert {"fMRI IG", "T1 IG"} <= set(table.columns) and len(regions.network_table(table)) == 3


def test_folds_explained_in_parallel_processes_match_one_process(tiny_run, tmp_path):
    import shutil

    from amage_core.train.rundir import RunDir

    cohort, run = tiny_run
    grid = np.diag([4.0, 4.0, 4.0, 1.0])
    grid[:3, 3] = -30
    copies = {}
    for label, cfg in (("serial", TrainConfig(cpu_threads=1)), ("parallel", TrainConfig(fold_workers=2, cpu_threads=1))):
        shutil.copytree(run.path, tmp_path / label, ignore=shutil.ignore_patterns("attributions"))
        copy = RunDir(tmp_path / label).load()
        copies[label] = (attributions.compute(copy, cohort, GraphConfig(topk=4), grid, 6.0, steps=4, train_cfg=cfg),
                         attributions.compute_occlusion(copy, cohort, GraphConfig(topk=4), grid, 6.0, per_fold=2,
                                                        mask_size=8, overlap=0.25, train_cfg=cfg))
    for serial, parallel in zip(copies["serial"], copies["parallel"]):
        assert serial.participant_id == parallel.participant_id and serial.fold == parallel.fold
        assert serial.arrays.keys() == parallel.arrays.keys()
        for key in serial.arrays:       # same models, inputs and thread count: the same numbers
            np.testing.assert_array_equal(serial.get(key), parallel.get(key), err_msg=key)


def _attr(values, folds=("0", "0", "1", "1", "2", "2"), key="roi_ig"):
    return attributions.Attributions([str(i) for i in range(len(folds))], list(folds), {key: np.asarray(values, float)})


def test_seed_stability_compares_runs_and_the_table_lists_folds_and_seeds():
    base = np.tile(np.arange(10.0), (6, 1))
    a, same, reverse = _attr(base), _attr(base + 1), _attr(-base)
    assert regions.seed_stability([a, same], "roi_ig") == pytest.approx(1.0)
    assert regions.seed_stability([a, reverse], "roi_ig") == pytest.approx(-1.0)
    assert regions.seed_stability([a], "roi_ig") is None and regions.seed_stability([a, same], "t1_ig_region") is None
    occ = _attr(base[:2], folds=("0", "1"), key="t1_occlusion_region")
    table = regions.stability_table({"seed 1": [a, occ], "seed 2": same})
    assert table.loc["fMRI IG"].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["T1 occlusion", "across folds (seed 1)"] == 1.0
    assert np.isnan(table.loc["T1 occlusion", "across seeds"]) and np.isnan(table.loc["T1 occlusion", "across folds (seed 2)"])


def test_region_table_takes_measures_from_several_attribution_sets():
    region_info = pd.DataFrame({"name": ["a", "b", "c"], "network": ["n1", "n1", "n2"]})
    ig = _attr(np.tile([1.0, 2.0, 3.0], (6, 1)))
    occ = _attr([[3.0, np.nan, 1.0]], folds=("0",), key="t1_occlusion_region")
    table = regions.region_table(ig, region_info, occ)
    assert table["fMRI IG"].tolist() == [1.0, 2.0, 3.0] and table["T1 occlusion"].iloc[[0, 2]].tolist() == [3.0, 1.0]


def _sex_truth(n=80, seed=0):
    """Half of the regions age 25% faster in males (T1), a quarter's networks 30% faster (fMRI)."""
    rng = np.random.default_rng(seed)
    truth = _truth(n, seed)
    truth["smri_male_rate_ratio"] = np.where(np.arange(n) % 2 == 0, 1.25, 1.0)
    truth["fmri_male_decline_ratio"] = np.where(np.arange(n) < n // 4, 1.3, 1.0)
    truth["smri_gm_loss_per_decade"] = rng.uniform(0.02, 0.06, n)
    return truth


def test_sex_difference_finds_the_regions_that_age_faster_in_males():
    truth = _sex_truth()
    rng = np.random.default_rng(2)
    base = rng.uniform(1, 2, len(truth))
    female = truth[["name", "network"]].assign(**{"T1 IG": base, "fMRI IG": base})
    male = female.assign(**{"T1 IG": base * truth.smri_male_rate_ratio ** 4, "fMRI IG": rng.permutation(base)})
    table = regions.sex_difference({"F": female, "M": male}, truth)
    t1, fmri = table.loc["T1 IG"], table.loc["fMRI IG"]
    assert t1["AUROC (M - F ranks)"] > 0.9 > t1["random AUROC (95th pct)"] and t1["Spearman with male excess"] > 0.5
    assert fmri["AUROC (M - F ranks)"] < fmri["random AUROC (95th pct)"]   # a shuffled male ranking
    assert t1["Spearman F vs M"] > fmri["Spearman F vs M"]
    assert "AUROC (M - F ranks)" not in regions.sex_difference({"F": female, "M": male})   # no truth: no check
    nets = regions.network_tables({"F": female, "M": male})
    assert list(nets.columns) == [("fMRI IG", "F"), ("fMRI IG", "M"), ("T1 IG", "F"), ("T1 IG", "M")]


def test_truth_agreement_for_males_uses_the_male_effect_sizes():
    truth = _sex_truth()
    male_rate = truth.smri_gm_loss_per_decade * truth.smri_male_rate_ratio
    table = truth[["name", "network"]].assign(**{"T1 IG": male_rate.to_numpy()})
    male = regions.truth_agreement(table, truth, sex="M").loc["T1 IG", "Spearman with effect size"]
    female = regions.truth_agreement(table, truth).loc["T1 IG", "Spearman with effect size"]
    assert male == pytest.approx(1.0) and female < male - 0.02


class _CornerModel(torch.nn.Module):
    """A T1 'model' whose prediction is the mean of the first 4^3 corner of the volume."""

    modalities = frozenset({"smri"})

    def forward(self, batch):
        from amage_core.models.spec import ModelOutput

        pred = batch.t1[:, 0, :4, :4, :4].mean((1, 2, 3))
        return ModelOutput(pred=pred, embedding=pred[:, None])


def test_occlusion_changes_the_output_where_the_model_looks():
    from amage_core.data.graph import participant_data

    data = participant_data(y=0.5, idx=0, t1=np.ones((16, 16, 16), np.float32))
    occ = attributions.occlusion_map(_CornerModel().eval(), data, mask_size=4, overlap=0.5)
    assert occ.shape == (16, 16, 16) and np.isfinite(occ).all() and (occ >= 0).all()
    assert occ[:4, :4, :4].mean() > 0.05 and occ[8:, 8:, 8:].max() < 1e-6


def test_t1_only_holds_the_graph_fixed_and_matches_the_full_model():
    from torch_geometric.data import Batch

    spec = tiny_spec()
    model = build_model(tiny_config("amagenet"), spec).eval()
    batch = random_batch(spec, batch_size=1, seed=3)
    data = batch.get_example(0)
    wrapper = attributions.T1Only(model, data)
    t1 = torch.cat([data.t1, torch.zeros_like(data.t1)])
    with torch.no_grad():
        out = wrapper(t1)
        expected = model(Batch.from_data_list([data, data.clone().update({"t1": t1[1:]})])).pred
    assert wrapper.split and out.shape == (2, 1)
    assert torch.allclose(out[:, 0], expected, atol=1e-5)


def test_spread_by_age_covers_the_age_range():
    ages = np.array([50.0, 20, 80, 30, 70, 60, 40])
    rows = np.array([0, 1, 2, 3, 4, 6])
    chosen = attributions.spread_by_age(rows, ages, 3)
    assert list(chosen) == [1, 2, 6] and list(attributions.spread_by_age(rows, ages, 10)) == list(rows)


def test_occlusion_of_a_run_is_out_of_sample_on_an_age_spread_subset(tiny_run):
    cohort, run = tiny_run
    grid = np.diag([4.0, 4.0, 4.0, 1.0])
    grid[:3, 3] = -30
    occ = attributions.compute_occlusion(run, cohort, GraphConfig(topk=4), grid, radius=6.0, per_fold=3,
                                         mask_size=8, overlap=0.25)
    folds = pd.read_csv(run.path / "folds.tsv", sep="\t", dtype=str).set_index("participant_id")["fold"]
    assert len(occ.participant_id) == 6 and all(folds[p] == f for p, f in zip(occ.participant_id, occ.fold))
    assert occ.get("t1_occlusion").shape == TINY_T1_SHAPE and np.isfinite(occ.get("t1_occlusion")).all()
    assert occ.get("t1_occlusion_region").shape == (6, cohort.regions.shape[0])
    assert occ.get("t1_occlusion").max() > 0
    again = attributions.compute_occlusion(run, cohort, GraphConfig(topk=4), grid, radius=6.0, per_fold=3,
                                           mask_size=8, overlap=0.25)
    assert np.array_equal(again.get("t1_occlusion"), occ.get("t1_occlusion"))
    table = regions.region_table(attributions.compute(run, cohort, GraphConfig(topk=4), grid, 6.0, steps=4),
                                 cohort.regions, occ)
    assert "T1 occlusion" in table and regions.fold_stability(occ, "t1_occlusion_region") is not None


def test_network_agreement_is_fair_to_networks_of_any_size():
    """Per-region importance = network total / network size (per-network pooling): the region-level
    check is misled by the sizes, the network-level one is not."""
    sizes = [34, 33, 32, 21, 22, 18]
    decline = [0.020, 0.015, 0.011, 0.010, 0.005, 0.003]      # the largest networks decline fastest
    total = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]                    # and carry the most importance
    rows = [(f"{k}-{i}", f"net{k}", total[k] / sizes[k], decline[k]) for k in range(6) for i in range(sizes[k])]
    df = pd.DataFrame(rows, columns=["name", "network", "fMRI IG", "fmri_loading_decline_per_decade"])
    truth = df[["name", "network", "fmri_loading_decline_per_decade"]].assign(smri_hotspot=False,
                                                                              smri_gm_loss_per_decade=0.0)
    net = regions.network_agreement(df[["name", "network", "fMRI IG"]], truth).loc["fMRI IG"]
    assert net.Spearman == pytest.approx(1.0) and net["permutation p"] == pytest.approx(1 / 720, abs=1e-3)
    assert net["random Spearman (95th pct)"] < 0.9
    shuffled = df.assign(**{"fMRI IG": df["fMRI IG"].to_numpy()[::-1]})
    assert regions.network_agreement(shuffled[["name", "network", "fMRI IG"]], truth).loc["fMRI IG", "permutation p"] > 0.05
