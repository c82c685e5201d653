"""Bias correction: exact on a known bias, fit on training data only."""
from __future__ import annotations

import numpy as np
import pytest

from amage_core.evaluate.bias import BiasCorrection, LeakError


def _biased(n: int, seed: int):
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    return age, 0.6 * age + 20.0          # regression to the mean: slope 0.6


def test_cole_correction_undoes_a_linear_bias():
    age, pred = _biased(50, 0)
    bias = BiasCorrection.fit(age, pred, [f"train-{i}" for i in range(50)], "cole")
    assert bias.slope == pytest.approx(0.6) and bias.intercept == pytest.approx(20.0)
    test_age, test_pred = _biased(10, 1)
    corrected = bias.apply(test_pred, None, [f"test-{i}" for i in range(10)])   # cole needs no age
    np.testing.assert_allclose(corrected, test_age)


def test_beheshti_offset_undoes_a_linear_bias_using_the_test_age():
    age, pred = _biased(50, 0)
    bias = BiasCorrection.fit(age, pred, range(50), "beheshti")     # gap = -0.4 age + 20
    assert bias.slope == pytest.approx(-0.4) and bias.intercept == pytest.approx(20.0)
    test_age, test_pred = _biased(10, 1)
    corrected = bias.apply(test_pred, test_age, [f"t{i}" for i in range(10)])
    np.testing.assert_allclose(corrected, test_age)


def test_correcting_a_participant_the_correction_was_fit_on_is_refused():
    age, pred = _biased(20, 0)
    ids = [f"sub-{i}" for i in range(20)]
    bias = BiasCorrection.fit(age, pred, ids)
    with pytest.raises(LeakError):
        bias.apply(pred[:3], age[:3], ids[:3])


def test_fit_needs_spread_ages():
    with pytest.raises(ValueError):
        BiasCorrection.fit(np.full(5, 40.0), np.arange(5.0), range(5))
