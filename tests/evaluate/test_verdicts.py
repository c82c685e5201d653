"""Verdicts on "A beats B" from per-seed prediction tables: holds, fails, inconclusive, with numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amage_core.evaluate.verdicts import (compare, ensemble, format_p, seed_summary, seed_table, tables_of,
                                          verdict_sentence, verdict_table)

N = 200
AGE = np.random.default_rng(0).uniform(18, 89, N)
IDS = [f"sub-{i:04d}" for i in range(N)]


def seeds(error_sd: float, seed_sd: float, n_seeds: int = 3, seed: int = 0, bias: float = 0.0) -> list[pd.DataFrame]:
    """Per-seed tables: a model-specific error per participant plus a seed-specific jitter."""
    rng = np.random.default_rng(seed)
    base = rng.normal(bias, error_sd, N)
    return [pd.DataFrame({"participant_id": IDS, "age": AGE,
                          "predicted_age": AGE + base + rng.normal(0, seed_sd, N)}) for _ in range(n_seeds)]


def test_a_clearly_better_model_holds_and_the_reverse_fails():
    good, bad = seeds(3.0, 0.5, seed=1), seeds(6.0, 0.5, seed=2)
    v = compare(good, bad, "fusion", "concat")
    assert v.outcome == "holds" and v.difference < -v.spread and v.p_value < 0.05 and v.n == N
    w = compare(bad, good, "concat", "fusion")
    assert w.outcome == "fails" and w.difference > w.spread
    text = verdict_sentence(v)
    assert "fusion beats concat" in text and "**holds**" in text and "p < 0.001" in text
    assert f"{v.a.mae_mean:.2f} ± {v.a.mae_sd:.2f} (3 seeds)" in text


def test_a_difference_within_the_seeds_spread_is_inconclusive():
    # the seed jitter (SD 4 per participant, a few tenths of MAE between seeds) swamps a 0.1-year edge
    a, b = seeds(4.0, 4.0, n_seeds=3, seed=3), seeds(4.0, 4.0, n_seeds=3, seed=4)
    v = compare(a, b, "A", "B")
    assert v.outcome == "inconclusive"
    assert abs(v.difference) <= v.spread and "within the seeds' spread" in v.reason


def test_beyond_the_spread_but_not_significant_is_inconclusive():
    # identical seeds (spread 0); B differs from A on a handful of participants only
    a = seeds(4.0, 0.0, n_seeds=2, seed=5)
    shifted = a[0].copy()
    shifted.loc[:4, "predicted_age"] += np.array([0.5, -0.5, 0.4, -0.3, 0.6])
    b = [shifted, shifted.copy()]
    v = compare(a, b, "A", "B")
    assert v.spread == 0.0 and v.difference != 0.0
    assert v.outcome == "inconclusive" and v.p_value >= 0.05 and "paired test" in v.reason


def test_one_seed_each_is_inconclusive_and_a_deterministic_model_counts_as_spread_zero():
    good, bad = seeds(3.0, 0.5, n_seeds=1, seed=1), seeds(6.0, 0.5, n_seeds=1, seed=2)
    v = compare(good, bad, "A", "B")
    assert v.outcome == "inconclusive" and v.spread is None and "not measured" in verdict_sentence(v)
    # a deep model with 3 seeds against a deterministic baseline (one table)
    w = compare(seeds(3.0, 0.5, seed=1), bad, "deep", "ridge")
    assert w.outcome == "holds" and w.spread == pytest.approx(w.a.mae_sd)


def test_summary_ensemble_and_table():
    tables = seeds(3.0, 1.0, n_seeds=3, seed=7)
    s = seed_summary(tables, "m")
    assert s.n_seeds == 3 and s.n == N and len(s.mae_per_seed) == 3
    assert s.mae_mean == pytest.approx(np.mean(s.mae_per_seed))
    assert s.ensemble_mae < s.mae_mean                      # averaging seeds removes their jitter
    ens = ensemble(tables)
    assert len(ens) == N
    np.testing.assert_allclose(ens.set_index("participant_id").loc[IDS, "predicted_age"],
                               np.mean([t["predicted_age"] for t in tables], axis=0))
    table = seed_table({"m": tables, "one": tables[:1]})
    assert table.loc["one", "MAE seed SD"] == "n/a (one seed)" and table["seeds"].tolist() == [3, 1]
    vt = verdict_table([compare(tables, seeds(6.0, 0.5, seed=2), "m", "b")])
    assert vt.loc["m beats b", "verdict"] == "holds" and vt.loc["m beats b", "Wilcoxon p"] == "< 0.001"
    assert not vt.isna().any().any()


def test_mismatched_tables_are_refused():
    a, b = seeds(3.0, 0.5, seed=1), seeds(3.0, 0.5, seed=2)
    with pytest.raises(ValueError, match="other participants than seed 0"):
        seed_summary([a[0], a[1].iloc[1:]])
    with pytest.raises(ValueError, match="only one of"):
        compare(a, [t.iloc[:-1] for t in b])
    older = [t.assign(age=t["age"] + 1) for t in b]
    with pytest.raises(ValueError, match="ages"):
        compare(a, older)


def test_tables_of_accepts_runs_and_seed_runs():
    t = seeds(3.0, 0.5, n_seeds=2)

    class Run:
        def __init__(self, p):
            self.predictions = p

    class Seeds:
        runs = [Run(t[0]), Run(t[1])]

    assert len(tables_of(Run(t[0]))) == 1 and len(tables_of(Seeds())) == 2 and len(tables_of(t)) == 2


@pytest.mark.parametrize("p, text", [(0.0004, "< 0.001"), (0.001, "0.001"), (0.04321, "0.043"),
                                     (1.0, "1.000"), (None, "n/a"), (float("nan"), "n/a")])
def test_format_p(p, text):
    assert format_p(p) == text
