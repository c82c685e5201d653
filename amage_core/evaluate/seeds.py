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
from typing import Sequence

import numpy as np
import pandas as pd

from amage_core.evaluate.metrics import METRICS, regression_metrics, summarise

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
            self._ensemble = ensemble([r.predictions for r in self.runs], self.model)
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


def prediction_keys(tables: Sequence[pd.DataFrame]) -> list[str]:
    """The columns naming a prediction: ``participant_id``, and ``session`` when every table has one."""
    return ["participant_id"] + (["session"] if all("session" in t for t in tables) else [])


def check_seed_tables(tables: Sequence[pd.DataFrame], name: str = "model") -> list[str]:
    """Refuse per-seed prediction tables that cannot be averaged; return their key columns.

    Every table needs ``participant_id``, ``age`` and ``predicted_age``, one row per key, and the
    same participants as the first (the seeds of a model share the outer folds)."""
    if not tables:
        raise ValueError(f"{name}: no prediction tables")
    keys = prediction_keys(tables)
    for i, t in enumerate(tables):
        missing = {"participant_id", "age", "predicted_age"} - set(t.columns)
        if missing:
            raise ValueError(f"{name}: table {i} lacks column(s) {sorted(missing)}")
        if t.duplicated(keys).any():
            raise ValueError(f"{name}: table {i} has several predictions for the same {keys}")
    first = set(map(tuple, tables[0][keys].astype(str).to_numpy()))
    for i, t in enumerate(tables[1:], 1):
        if set(map(tuple, t[keys].astype(str).to_numpy())) != first:
            raise ValueError(f"{name}: seed {i} predicts other participants than seed 0 (seed runs that "
                             "hold different participants cannot be averaged: they must share the outer folds)")
    return keys


def ensemble(tables: Sequence[pd.DataFrame], name: str = "model") -> pd.DataFrame:
    """Average per-seed prediction tables of the same participants (see :attr:`SeedRuns.predictions`).

    One row per participant (and session), sorted by them: the first table's columns, with
    ``predicted_age``, ``predicted_age_corrected`` and ``gate_*`` averaged over the seeds and
    ``predicted_age_seed_sd`` their SD (ddof 1; 0 for one table). Raises ``ValueError`` (naming
    ``name``) when the tables cannot be averaged (:func:`check_seed_tables`) or disagree on ages."""
    keys = check_seed_tables(tables, name)
    stacked = [t.sort_values(keys).reset_index(drop=True) for t in tables]
    first = stacked[0]
    for table in stacked[1:]:
        if not np.allclose(table["age"].to_numpy(dtype=float), first["age"].to_numpy(dtype=float)):
            raise ValueError(f"{name}: the seeds disagree on participants' ages")
    out = first.copy()
    averaged = [c for c in first.columns if c in _AVERAGED or c.startswith("gate_")]
    for column in averaged:
        values = np.stack([t[column].to_numpy(dtype=float) for t in stacked])
        out[column] = values.mean(axis=0)
    values = np.stack([t["predicted_age"].to_numpy(dtype=float) for t in stacked])
    out["predicted_age_seed_sd"] = values.std(axis=0, ddof=1) if len(stacked) > 1 else 0.0
    return out
