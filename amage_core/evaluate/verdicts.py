"""Verdicts on claims of the form "model A beats model B", computed from every seed's predictions.

Interface
---------
A model is given as a list of its **per-seed prediction tables** (pandas DataFrames with
``participant_id``, ``age``, ``predicted_age``; a ``session`` column is used as part of the key when
every table has one). The seeds of one model must predict the same participants (they share the
outer folds), and the two models of a claim must predict the same participants with the same ages;
otherwise a ``ValueError`` says why. A deterministic model (a classical baseline on fixed folds) may
be given as one table. :func:`tables_of` turns a run (``.predictions``) or a set of seed runs
(``.runs``, e.g. :class:`amage_core.evaluate.seeds.SeedRuns`) into such a list. The seed ensemble is
:func:`amage_core.evaluate.seeds.ensemble`, the one the chapters' tables read (``SeedRuns.predictions``).

- :func:`seed_summary` -> :class:`SeedSummary`: MAE per seed, its mean and SD (ddof 1) over
  seeds, and the MAE of the seed ensemble (each participant's predictions averaged over seeds).
- :func:`compare` -> :class:`Verdict` for "A beats B":

  * **holds** when A's seed-mean MAE is lower than B's by more than the seeds' spread **and** a
    paired test over participants gives p < ``alpha`` (0.05) in A's favour;
  * **fails** when B is better by the same standard;
  * **inconclusive** otherwise (including when no spread can be measured: one seed each).

  The seeds' spread is ``sqrt(sd_A^2 + sd_B^2)``, the SD of the MAE difference between one seed of
  A and one seed of B (a model with one table contributes 0: it is taken as deterministic). The
  paired test is the two-sided Wilcoxon signed-rank test on the participants' absolute errors of
  the two seed ensembles.
- :func:`verdict_sentence`: one sentence with the outcome and its numbers;
  :func:`verdict_table`: one row per verdict; :func:`format_p`: "< 0.001" or three decimals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from amage_core.evaluate.seeds import ensemble, prediction_keys

ALPHA = 0.05
Outcome = Literal["holds", "fails", "inconclusive"]


def format_p(p: float | None) -> str:
    """A p-value as a reader wants it: "< 0.001", else three decimals ("n/a" when undefined)."""
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def tables_of(model) -> list[pd.DataFrame]:
    """Per-seed prediction tables of a run (one table), a set of seed runs (``.runs``), a DataFrame
    or a list of DataFrames."""
    if isinstance(model, pd.DataFrame):
        return [model]
    if isinstance(model, (list, tuple)):
        return [m if isinstance(m, pd.DataFrame) else m.predictions for m in model]
    if hasattr(model, "runs"):
        return [r.predictions for r in model.runs]
    return [model.predictions]


@dataclass(frozen=True)
class SeedSummary:
    name: str
    n_seeds: int
    n: int                          # participants
    mae_per_seed: tuple[float, ...]
    mae_mean: float
    mae_sd: float | None            # None with one seed
    ensemble_mae: float


def seed_summary(tables: Sequence[pd.DataFrame], name: str = "model") -> SeedSummary:
    """MAE of every seed, their mean ± SD, and the seed ensemble's MAE (see the module docstring)."""
    ens = ensemble(tables, name)            # refuses tables that cannot be averaged
    maes = tuple(float(np.mean(np.abs(t["predicted_age"].to_numpy(float) - t["age"].to_numpy(float))))
                 for t in tables)
    return SeedSummary(name, len(tables), len(ens), maes, float(np.mean(maes)),
                       float(np.std(maes, ddof=1)) if len(maes) > 1 else None,
                       float(np.mean(np.abs(ens["predicted_age"] - ens["age"]))))


def seed_table(models: dict[str, Sequence[pd.DataFrame]], digits: int = 2) -> pd.DataFrame:
    """One row per model: seeds, participants, MAE mean ± SD over seeds, the seed ensemble's MAE."""
    rows = {}
    for name, tables in models.items():
        s = seed_summary(tables, name)
        rows[name] = {"seeds": s.n_seeds, "n": s.n, "MAE (seed mean)": round(s.mae_mean, digits),
                      "MAE seed SD": "n/a (one seed)" if s.mae_sd is None else f"{s.mae_sd:.{digits}f}",
                      "MAE (seed ensemble)": round(s.ensemble_mae, digits)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


@dataclass(frozen=True)
class Verdict:
    a: SeedSummary
    b: SeedSummary
    outcome: Outcome
    difference: float               # seed-mean MAE of A minus B (negative: A better)
    spread: float | None            # the seeds' spread (None: one seed each, not measured)
    p_value: float                  # two-sided Wilcoxon signed-rank, |error| of the two ensembles
    n: int                          # participants in the paired test
    reason: str

    @property
    def claim(self) -> str:
        return f"{self.a.name} beats {self.b.name}"


def compare(a_tables: Sequence[pd.DataFrame], b_tables: Sequence[pd.DataFrame], a_name: str = "A",
            b_name: str = "B", alpha: float = ALPHA) -> Verdict:
    """The verdict on "A beats B" (see the module docstring for the rule)."""
    a, b = seed_summary(a_tables, a_name), seed_summary(b_tables, b_name)
    keys = prediction_keys(list(a_tables) + list(b_tables))
    ea, eb = ((ensemble(tables, name)[keys + ["age", "predicted_age"]].astype({k: str for k in keys}))
              for tables, name in ((a_tables, a_name), (b_tables, b_name)))
    merged = ea.merge(eb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    if (merged["_merge"] != "both").any():
        raise ValueError(f"{(merged['_merge'] != 'both').sum()} participant(s) are predicted by only one of "
                         f"{a_name} and {b_name}")
    if not np.allclose(merged["age_a"], merged["age_b"]):
        raise ValueError(f"{a_name} and {b_name} disagree on participants' ages: not the same cohort")
    err_a = np.abs(merged["predicted_age_a"] - merged["age_a"]).to_numpy()
    err_b = np.abs(merged["predicted_age_b"] - merged["age_a"]).to_numpy()
    if np.allclose(err_a, err_b):
        p = 1.0
    else:
        p = float(stats.wilcoxon(err_a, err_b).pvalue)
    diff = a.mae_mean - b.mae_mean
    sds = [s.mae_sd for s in (a, b) if s.mae_sd is not None]
    spread = float(np.sqrt(sum(sd ** 2 for sd in sds))) if sds else None
    paired = float(np.mean(err_a - err_b))          # ensemble MAE difference (same sign as the test's)
    outcome: Outcome = "inconclusive"
    if spread is None:
        reason = "one seed each: the seeds' spread is not measured"
    elif abs(diff) <= spread:
        reason = "the MAE difference is within the seeds' spread"
    elif p >= alpha:
        reason = f"the paired test does not reach p < {alpha:g}"
    elif np.sign(paired) != np.sign(diff):
        reason = "the seed means and the seed ensembles disagree on which model is better"
    else:
        outcome = "holds" if diff < 0 else "fails"
        reason = (f"{a_name if diff < 0 else b_name} is better beyond the seeds' spread "
                  f"and the paired test gives p < {alpha:g}")
    return Verdict(a, b, outcome, float(diff), spread, p, len(merged), reason)


def _mae(s: SeedSummary) -> str:
    if s.mae_sd is None:
        return f"{s.mae_mean:.2f} ({'one seed' if s.n_seeds == 1 else f'{s.n_seeds} seeds'})"
    return f"{s.mae_mean:.2f} ± {s.mae_sd:.2f} ({s.n_seeds} seeds)"


def verdict_sentence(v: Verdict) -> str:
    """One sentence: the claim, the outcome and the numbers it rests on."""
    p = format_p(v.p_value)
    p_text = f"p {p}" if p.startswith("<") else f"p = {p}"
    spread = "not measured" if v.spread is None else f"{v.spread:.2f}"
    return (f"*{v.claim}*: **{v.outcome}**. MAE {_mae(v.a)} against {_mae(v.b)}, a difference of "
            f"{v.difference:+.2f} years (seeds' spread {spread}); Wilcoxon signed-rank on the "
            f"{v.n} participants' absolute errors of the seed ensembles, {p_text}: {v.reason}.")


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per verdict: claim, outcome, both MAEs (seed mean ± SD), difference, spread, p, n."""
    rows = []
    for v in verdicts:
        rows.append({"claim": v.claim, "verdict": v.outcome, "MAE A": _mae(v.a), "MAE B": _mae(v.b),
                     "difference (y)": round(v.difference, 2),
                     "seeds' spread (y)": "not measured" if v.spread is None else round(v.spread, 2),
                     "Wilcoxon p": format_p(v.p_value), "n": int(v.n), "why": v.reason})
    return pd.DataFrame(rows).set_index("claim")
