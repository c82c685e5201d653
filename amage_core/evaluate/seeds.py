"""Runs of one model that differ only in the training seed (``workflow.seed_runs``).

Every deep number of the book is read from a :class:`SeedRuns`: the per-seed metrics (their mean and
SD say how much a result moves with the seed alone) and the seed ensemble (each participant's
predictions averaged over the seeds, all out-of-sample: every seed run shares the outer folds).
A :class:`SeedRuns` reads like one run (``path``, ``predictions``, ``metrics``) so tables and
figures take either.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from amage_core.evaluate.metrics import METRICS, regression_metrics, summarise

_KEYS = ("participant_id", "session")
_AVERAGED = ("predicted_age", "predicted_age_corrected")


@dataclass
class SeedRuns:
    model: str
    seeds: list[int]
    runs: list                      # RunResult per seed, in ``seeds`` order
    _ensemble: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        """The first seed's run folder (the profile's own seed)."""
        return self.runs[0].path

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.runs)

    @property
    def reused(self) -> bool:
        return all(r.reused for r in self.runs)

    @property
    def predictions(self) -> pd.DataFrame:
        """The seed ensemble: one row per participant (and session) with ``predicted_age`` (and the
        corrected and gate columns) averaged over the seeds, ``predicted_age_seed_sd`` their SD."""
        if self._ensemble is None:
            self._ensemble = ensemble([r.predictions for r in self.runs])
        return self._ensemble

    @property
    def metrics(self) -> dict:
        """``metrics.json`` of the ensemble predictions (as a single run has)."""
        return summarise(self.predictions)

    def per_seed(self) -> pd.DataFrame:
        """One row per seed: uncorrected pooled metrics (``n``, MAE, RMSE, R², r, r(gap, age))."""
        rows = [{"seed": s, **regression_metrics(r.predictions["age"].to_numpy(),
                                                 r.predictions["predicted_age"].to_numpy())}
                for s, r in zip(self.seeds, self.runs)]
        return pd.DataFrame(rows)

    def spread(self) -> dict[str, dict[str, float | None]]:
        """metric -> {mean, sd (ddof 1; None for one seed), min, max} over the seeds (uncorrected)."""
        table = self.per_seed()
        out = {}
        for metric in METRICS:
            values = table[metric].astype(float).to_numpy()
            values = values[np.isfinite(values)]
            out[metric] = {
                "mean": float(values.mean()) if len(values) else None,
                "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
                "min": float(values.min()) if len(values) else None,
                "max": float(values.max()) if len(values) else None,
            }
        return out


def ensemble(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Average prediction tables of the same participants (see :attr:`SeedRuns.predictions`).

    Raises ``ValueError`` when the tables do not hold the same participants and ages."""
    if not tables:
        raise ValueError("no prediction tables to average")
    keys = [k for k in _KEYS if k in tables[0]]
    first = tables[0].sort_values(keys).reset_index(drop=True)
    stacked = []
    for table in tables:
        table = table.sort_values(keys).reset_index(drop=True)
        if not table[keys + ["age"]].astype(str).equals(first[keys + ["age"]].astype(str)):
            raise ValueError("seed runs hold different participants or ages: they cannot be averaged")
        stacked.append(table)
    out = first.copy()
    averaged = [c for c in first.columns if c in _AVERAGED or c.startswith("gate_")]
    for column in averaged:
        values = np.stack([t[column].to_numpy(dtype=float) for t in stacked])
        out[column] = values.mean(axis=0)
    values = np.stack([t["predicted_age"].to_numpy(dtype=float) for t in stacked])
    out["predicted_age_seed_sd"] = values.std(axis=0, ddof=1) if len(stacked) > 1 else 0.0
    return out
