"""Bias correction of brain-age predictions, fit on training data only.

Brain-age models regress towards the mean age, so the gap (predicted - age) correlates negatively
with age. Two standard corrections, both fit on *training* predictions against training ages:

- ``cole`` (de Lange & Cole 2020; Cole et al. 2018): fit ``predicted = slope * age + intercept``,
  then ``corrected = (predicted - intercept) / slope``. Needs no age at prediction time.
- ``beheshti`` (Beheshti et al. 2019, the offset form): fit ``gap = slope * age + intercept``, then
  ``corrected = predicted - (slope * age + intercept)``. Uses each test person's own chronological
  age when applied (as the method prescribes), never to fit.

Which training predictions: ``cross_validate`` uses the inner-validation predictions (held out from
the weights; nested protocol) or the training-fold predictions (``TrainConfig.bias_fit``); the
baselines use out-of-fold predictions inside the training fold. The fitted object keeps the ids it
was fit on, and :meth:`BiasCorrection.apply` refuses to correct any of them: a participant whose age
informed the fit can never be reported as a test prediction.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats


class LeakError(RuntimeError):
    """Test participants were part of the data a correction (or scaler) was fit on."""


@dataclass(frozen=True)
class BiasCorrection:
    method: Literal["cole", "beheshti"]
    slope: float
    intercept: float
    fitted_on: tuple[str, ...]        # participant_ids of the training predictions used
    source: str = ""                  # which predictions: "validation", "training", "out-of-fold"

    @classmethod
    def fit(cls, age: np.ndarray, predicted: np.ndarray, participant_ids, method: str = "cole",
            source: str = "") -> BiasCorrection:
        age = np.asarray(age, dtype=float)
        predicted = np.asarray(predicted, dtype=float)
        if method not in ("cole", "beheshti"):
            raise ValueError(f"unknown bias correction {method!r}; use 'cole' or 'beheshti'")
        if len(age) < 3 or np.ptp(age) == 0:
            raise ValueError(f"bias correction needs at least three predictions of different ages; got "
                             f"{len(age)} ({source or 'training'} predictions): use more participants, "
                             "a larger train.val_fraction or train.bias_fit: training")
        target = predicted if method == "cole" else predicted - age
        fit = stats.linregress(age, target)
        if method == "cole" and fit.slope < 0.1:
            warnings.warn(f"bias correction slope {fit.slope:.3g} is near zero: the model predicts "
                          "almost the same age for everyone, corrected ages are unstable", stacklevel=2)
        return cls(method, float(fit.slope), float(fit.intercept),
                   tuple(str(i) for i in participant_ids), source)

    def apply(self, predicted: np.ndarray, age: np.ndarray, participant_ids) -> np.ndarray:
        """Corrected predictions for new participants (``age`` is used by ``beheshti`` only)."""
        seen = set(self.fitted_on).intersection(str(i) for i in participant_ids)
        if seen:
            raise LeakError(f"{len(seen)} participant(s) to correct were used to fit the correction "
                            f"(e.g. {sorted(seen)[:3]})")
        predicted = np.asarray(predicted, dtype=float)
        if self.method == "cole":
            return (predicted - self.intercept) / self.slope
        return predicted - (self.slope * np.asarray(age, dtype=float) + self.intercept)

    def to_dict(self) -> dict:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept,
                "source": self.source, "fitted_on": list(self.fitted_on)}

    @classmethod
    def from_dict(cls, data: dict) -> BiasCorrection:
        """Inverse of :meth:`to_dict` (a run's ``fold-<k>/bias.json``)."""
        return cls(data["method"], data["slope"], data["intercept"], tuple(data["fitted_on"]),
                   data.get("source", ""))
