"""The oracle is computed from the generative model and behaves as a bound should."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from amage_core.synth.cohort import load_truth
from amage_core.synth.latent import age_prior
from amage_core.synth.oracle import combine, monte_carlo_oracle, posterior_median
from amage_core.synth.presets import PRESETS

SDS = {"brain_age": 2.5, "smri": 3.0, "fmri": 5.0}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_posterior_median_matches_brute_force(preset):
    p = PRESETS[preset]
    m = np.array([p.age_min - 5, p.age_min + 1, 0.5 * (p.age_min + p.age_max), p.age_max - 2, p.age_max + 8])
    v = 4.0 ** 2
    grid = np.linspace(p.age_min, p.age_max, 200001)
    post = age_prior(p, grid)[None, :] * np.exp(-0.5 * (m[:, None] - grid[None, :]) ** 2 / v)
    cdf = np.cumsum(post, axis=1)
    brute = grid[(cdf < 0.5 * cdf[:, -1:]).sum(axis=1)]
    np.testing.assert_allclose(posterior_median(m, v, p), brute, atol=0.01)


def test_gls_combination_of_both_modalities():
    m, v = combine(np.array([[50.0, 60.0]]), ("smri", "fmri"), SDS)
    w = (1 / 9) / (1 / 9 + 1 / 25)
    assert m[0] == pytest.approx(w * 50 + (1 - w) * 60)
    assert v == pytest.approx(2.5 ** 2 + 1 / (1 / 9 + 1 / 25))


def test_oracle_without_age_bounds_is_the_gaussian_mae():
    wide = dataclasses.replace(PRESETS["camcan-like"], age_min=-1000.0, age_max=1000.0)
    out = monte_carlo_oracle(wide, SDS, n_draws=20000, seed=0)
    expected = np.sqrt(2 / np.pi) * np.sqrt(SDS["brain_age"] ** 2 + SDS["smri"] ** 2)
    assert out["smri"]["mae"] == pytest.approx(expected, abs=4 * out["smri"]["mae_se"])


def test_fusion_beats_each_modality_and_mc_seed_agrees():
    a = monte_carlo_oracle(PRESETS["camcan-like"], SDS, n_draws=20000, seed=0)
    b = monte_carlo_oracle(PRESETS["camcan-like"], SDS, n_draws=20000, seed=1)
    assert a["both"]["mae"] < a["smri"]["mae"] < a["fmri"]["mae"]
    for key in ("smri", "fmri", "both"):
        se = np.hypot(a[key]["mae_se"], b[key]["mae_se"])
        assert abs(a[key]["mae"] - b[key]["mae"]) < 4 * se
    # the shared brain-age gap can never be averaged away
    assert a["both"]["mae"] > 0.7 * np.sqrt(2 / np.pi) * SDS["brain_age"]


def test_written_oracle_matches_the_generative_model(tiny_cohort, tiny_cfg):
    truth = load_truth(tiny_cohort)
    sds = {"brain_age": tiny_cfg.brain_age_sd, "smri": tiny_cfg.smri_deviation_sd, "fmri": tiny_cfg.fmri_deviation_sd}
    assert truth.oracle["latent_sds"] == sds
    again = monte_carlo_oracle(PRESETS[tiny_cfg.preset], sds, n_draws=truth.oracle["population"]["n_draws"],
                               seed=tiny_cfg.seed + 100)
    for key in ("smri", "fmri", "both"):
        assert truth.oracle["population"][key]["mae"] == pytest.approx(again[key]["mae"], abs=0.1)
    p = truth.participants
    assert np.allclose(p["brain_age"], p["age"] + p["brain_age_gap"])
    assert np.allclose(p["smri_age"], p["brain_age"] + p["smri_deviation"])
    assert np.allclose(p["fmri_age"], p["brain_age"] + p["fmri_deviation"])
    assert truth.oracle["median_age_predictor_mae"] > truth.oracle["cohort"]["fmri"]["mae"]
