"""Age scaling: the network regresses age min-max scaled to [0, 1] (as the authors' code does).

The scaler is fit on the training part of a split only (``cross_validate`` decides which rows);
it records the participants it saw, so a test can prove test ages never reached it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AgeScaler:
    low: float                     # youngest training age (years) -> 0
    high: float                    # oldest training age (years) -> 1
    fitted_on: tuple[str, ...]     # participant_ids whose ages defined low/high

    @classmethod
    def fit(cls, ages: np.ndarray, participant_ids: list[str] | np.ndarray) -> AgeScaler:
        ages = np.asarray(ages, dtype=float)
        if ages.size < 2 or not np.all(np.isfinite(ages)) or ages.max() <= ages.min():
            raise ValueError("the age scaler needs at least two different finite ages")
        return cls(float(ages.min()), float(ages.max()), tuple(str(i) for i in participant_ids))

    def transform(self, ages: np.ndarray) -> np.ndarray:
        """Years -> scaled age (training range maps to [0, 1]; other ages extrapolate linearly)."""
        return (np.asarray(ages, dtype=float) - self.low) / (self.high - self.low)

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled age -> years."""
        return np.asarray(scaled, dtype=float) * (self.high - self.low) + self.low

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "fitted_on": list(self.fitted_on)}
