"""Age scaling: the network regresses a scaled age, ``(age - center) / scale``.

Two kinds (``TrainConfig.target``):

- ``standard`` (the training recipe): center = mean, scale = SD of the training ages, so the target
  has mean 0 and SD 1 on the training data and a head whose output bias is 0 starts at the training
  mean (:class:`~amage_core.models.fusion.RegressionHead` initialises it so);
- ``minmax`` (the authors' code): the training range maps to [0, 1].

The scaler is fit on the training part of a split only (``cross_validate`` decides which rows;
the ``released-code`` protocol reproduces the authors' scaler fit on everyone, on purpose); it
records the participants it saw, so a test can prove test ages never reached it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ScalerKind = Literal["standard", "minmax"]


@dataclass(frozen=True)
class AgeScaler:
    center: float                  # years mapped to 0 (training mean, or youngest training age)
    scale: float                   # years per unit of scaled age (training SD, or the age range)
    fitted_on: tuple[str, ...]     # participant_ids whose ages defined center/scale
    kind: ScalerKind = "standard"

    @classmethod
    def fit(cls, ages: np.ndarray, participant_ids: list[str] | np.ndarray,
            kind: ScalerKind = "standard") -> AgeScaler:
        ages = np.asarray(ages, dtype=float)
        if ages.size < 2 or not np.all(np.isfinite(ages)) or ages.max() <= ages.min():
            raise ValueError("the age scaler needs at least two different finite ages")
        if kind == "standard":
            center, scale = float(ages.mean()), float(ages.std())
        elif kind == "minmax":
            center, scale = float(ages.min()), float(ages.max() - ages.min())
        else:
            raise ValueError(f"unknown age scaler kind {kind!r}; use 'standard' or 'minmax'")
        return cls(center, scale, tuple(str(i) for i in participant_ids), kind)

    @classmethod
    def identity(cls) -> AgeScaler:
        """Scaled age = age (for datasets whose targets are never read, e.g. attributions)."""
        return cls(0.0, 1.0, (), "standard")

    def transform(self, ages: np.ndarray) -> np.ndarray:
        """Years -> scaled age."""
        return (np.asarray(ages, dtype=float) - self.center) / self.scale

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled age -> years."""
        return np.asarray(scaled, dtype=float) * self.scale + self.center

    def to_dict(self) -> dict:
        return {"kind": self.kind, "center": self.center, "scale": self.scale,
                "fitted_on": list(self.fitted_on)}

    @classmethod
    def from_dict(cls, data: dict) -> AgeScaler:
        """Inverse of :meth:`to_dict`; also reads the min-max records of earlier runs (low, high)."""
        if "center" in data:
            return cls(float(data["center"]), float(data["scale"]), tuple(data["fitted_on"]),
                       data.get("kind", "standard"))
        low, high = float(data["low"]), float(data["high"])
        return cls(low, high - low, tuple(data["fitted_on"]), "minmax")
