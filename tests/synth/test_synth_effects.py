"""The injected effects are present with the specified sign and size."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nilearn.connectome import sym_matrix_to_vec
from scipy import stats

from amage_core.data.atlas import load_atlas
from amage_core.synth import anatomy, function
from amage_core.synth.cohort import load_truth
from amage_core.synth.presets import PRESETS

PRESET = PRESETS["camcan-like"]


@pytest.fixture(scope="module")
def model():
    return anatomy.build_anatomy_model(8.0)


def _sphere(model, centre, radius):
    xyz = anatomy.world_coords(model.shape, model.affine)
    return sum((xyz[i] - centre[i]) ** 2 for i in range(3)) <= radius ** 2


def _tissue(model, age, sex, seed=11):
    person = anatomy.AnatomyPerson(age, sex, 1.0)
    return anatomy.aged_tissue(model, person, np.random.default_rng(seed))


def test_gm_loss_formula_accelerates_late():
    ages = np.array([20.0, 40.0, 55.0, 70.0, 85.0])
    loss = anatomy.gm_loss(ages, 0.03, 0.01)
    np.testing.assert_allclose(loss, 0.03 * (ages - 20) / 10 + 0.01 * np.maximum(0, (ages - 55) / 10) ** 2)
    per_decade = np.diff(loss) / np.diff(ages) * 10
    assert per_decade[-1] > per_decade[0]


def test_regional_gm_loss_has_the_specified_size(model):
    """Same individual at 30 and 80: GM in a hotspot shrinks by the rate map's amount, more than elsewhere."""
    young, old = _tissue(model, 30.0, "F")[0], _tissue(model, 80.0, "F")[0]
    for hotspot in (anatomy.HOTSPOTS[0], anatomy.SPARED[0]):
        region = _sphere(model, hotspot.centre, 12.0) & (model.gm > 0.3)
        r_lin, r_quad = model.rate_linear[region].mean(), model.rate_quadratic[region].mean()
        expected = (1 - anatomy.gm_loss(80.0, r_lin, r_quad)) / (1 - anatomy.gm_loss(30.0, r_lin, r_quad))
        measured = old[region].sum() / young[region].sum()
        assert measured == pytest.approx(expected, abs=0.03), hotspot.name
    pfc = _sphere(model, anatomy.HOTSPOTS[0].centre, 12.0) & (model.gm > 0.3)
    v1 = _sphere(model, anatomy.SPARED[0].centre, 12.0) & (model.gm > 0.3)
    assert old[pfc].sum() / young[pfc].sum() < old[v1].sum() / young[v1].sum() - 0.1


def test_ventricles_expand_with_age(model):
    xyz = anatomy.world_coords(model.shape, model.affine)
    central = (np.abs(xyz[0]) < 20) & (xyz[1] > -40) & (xyz[1] < 25) & (xyz[2] > 0) & (xyz[2] < 30)
    csf = [(_tissue(model, age, "M")[2] * central).sum() for age in (25.0, 55.0, 85.0)]
    assert csf[0] < csf[1] < csf[2]
    assert csf[2] > 1.3 * csf[0]


def test_structural_sex_effects(model):
    # trajectory: males lose more prefrontal GM between 30 and 80 (male_ratio 1.25 there)
    pfc = _sphere(model, anatomy.HOTSPOTS[0].centre, 12.0) & (model.gm > 0.3)
    drop = {sex: 1 - _tissue(model, 80.0, sex)[0][pfc].sum() / _tissue(model, 30.0, sex)[0][pfc].sum()
            for sex in "FM"}
    ratio = model.male_ratio[pfc].mean()
    assert drop["M"] / drop["F"] == pytest.approx(ratio, rel=0.1) and ratio > 1.1
    # offset: males have more amygdala/hippocampus GM at the same head size (age 20: no loss yet)
    name, centre, sigma, value = anatomy.SEX_OFFSETS[0]
    amy = _sphere(model, centre, sigma) & (model.gm > 0.3)
    male, female = _tissue(model, 20.0, "M")[0][amy].sum(), _tissue(model, 20.0, "F")[0][amy].sum()
    assert male / female > 1 + 0.2 * value          # partial volume and the GM ceiling dilute it
    name, centre, sigma, value = anatomy.SEX_OFFSETS[1]
    ifg = _sphere(model, centre, sigma) & (model.gm > 0.3)
    assert _tissue(model, 20.0, "F")[0][ifg].sum() > (1 - 0.2 * value) * _tissue(model, 20.0, "M")[0][ifg].sum()


def test_cohort_regional_t1_slopes(tiny_cohort):
    """End to end: T1 intensity in hotspot regions falls with age faster than in low-rate regions."""
    import nibabel as nib

    truth = load_truth(tiny_cohort)
    regions = truth.regions
    hot = regions[regions["smri_hotspot"]]
    cold = regions.nsmallest(len(hot), "smri_gm_loss_per_decade")
    p = truth.participants
    values = {"hot": [], "cold": []}
    model = anatomy.build_anatomy_model(8.0)
    xyz = np.moveaxis(anatomy.world_coords(model.shape, model.affine), 0, -1)
    sel = {}
    for key, table in (("hot", hot), ("cold", cold)):
        d = np.linalg.norm(xyz[..., None, :] - table[["x", "y", "z"]].to_numpy()[None, None, None], axis=-1)
        sel[key] = (d.min(axis=-1) <= 10.0) & (model.gm > 0.3)
    for pid in p["participant_id"]:
        t1 = np.asarray(nib.load(next(tiny_cohort.glob(f"derivatives/fmriprep/{pid}/anat/*T1w.nii.gz"))).dataobj, float)
        mask = np.asarray(nib.load(next(tiny_cohort.glob(f"derivatives/fmriprep/{pid}/anat/*mask.nii.gz"))).dataobj) > 0
        ref = np.percentile(t1[mask], 90)                    # white-matter intensity: gain and contrast
        for key in values:
            values[key].append(t1[sel[key]].mean() / ref)
    slope = {k: stats.linregress(p["smri_age"], v).slope for k, v in values.items()}
    assert slope["hot"] < 0
    assert slope["hot"] < slope["cold"]


def _within_between(atlas, fs, network):
    r = np.corrcoef(fs.neural.T)
    idx = atlas.network_index()
    k = atlas.networks.index(network)
    inside = idx == k
    within = sym_matrix_to_vec(r[np.ix_(inside, inside)], discard_diagonal=True).mean()
    between = r[np.ix_(idx >= 0, idx >= 0)][idx[idx >= 0][:, None] != idx[idx >= 0][None, :]].mean()
    return within, between


def test_functional_ageing_sign_and_size():
    atlas = load_atlas("dosenbach160")
    nets = function.network_table(atlas)
    rng = np.random.default_rng(0)
    ages = np.linspace(20, 85, 80)
    wb = np.array([_within_between(atlas, function.simulate_function(atlas, nets, PRESET, 200, 1.97, a, a, "F", rng),
                                   "default") for a in ages])
    slope_within = stats.linregress(ages / 10, wb[:, 0]).slope
    expected = (function.expected_fc(atlas, nets, 70.0, "F") - function.expected_fc(atlas, nets, 30.0, "F"))
    dmn = atlas.network_index() == atlas.networks.index("default")
    expected_slope = sym_matrix_to_vec(expected[np.ix_(dmn, dmn)], discard_diagonal=True).mean() / 4
    assert slope_within < 0
    assert slope_within == pytest.approx(expected_slope, abs=0.4 * abs(expected_slope))
    assert stats.linregress(ages, wb[:, 1]).slope > 0            # between-network coupling rises


def test_functional_sex_effect():
    atlas = load_atlas("dosenbach160")
    nets = function.network_table(atlas)
    rng = np.random.default_rng(1)
    within = {sex: np.mean([_within_between(atlas, function.simulate_function(atlas, nets, PRESET, 200, 1.97,
                                                                              60.0, 60.0, sex, rng), "default")[0]
                            for _ in range(30)]) for sex in "FM"}
    assert within["F"] > within["M"] + 0.03
    lam = {sex: function.expected_loading(nets, np.array([30.0, 80.0]), sex) for sex in "FM"}
    k = atlas.networks.index("default")
    decline = {sex: lam[sex][k, 0] - lam[sex][k, 1] for sex in "FM"}
    assert decline["M"] > decline["F"]                            # steeper DMN decline in males


def test_motion_rises_with_age(tiny_cohort):
    truth = load_truth(tiny_cohort)
    fds = []
    for pid in truth.participants["participant_id"]:
        conf = pd.read_csv(next(tiny_cohort.glob(f"derivatives/fmriprep/{pid}/func/*confounds_timeseries.tsv")),
                           sep="\t", na_values="n/a")
        fds.append(conf["framewise_displacement"].mean())
    np.testing.assert_allclose(fds, truth.participants["mean_fd"], rtol=1e-4)
    assert stats.spearmanr(truth.participants["age"], fds).statistic > 0.2
    rng = np.random.default_rng(0)
    ages = rng.uniform(18, 89, 4000)
    log_fd = np.log([function.mean_fd_target(a, PRESET, rng) for a in ages])
    assert stats.linregress(ages / 10, log_fd).slope == pytest.approx(np.log(PRESET.fd_per_decade), abs=0.02)


def test_head_size_sex_difference(tiny_cohort):
    p = load_truth(tiny_cohort).participants
    assert p.loc[p["sex"] == "M", "head_scale"].mean() > p.loc[p["sex"] == "F", "head_scale"].mean()
