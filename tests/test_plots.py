"""Figures name the units of their colour bars."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from amage_core import plots


def test_brain_maps_label_their_colour_bars():
    regions = pd.DataFrame({"x": [-40.0, 40, 0, 10, -10], "y": [0.0, 0, -60, 20, 30], "z": [10.0, 10, 20, 40, 0]})
    fig = plots.region_markers(regions, np.arange(5.0), "markers", units="mean |IG| (years)")
    assert fig.axes[-1].get_ylabel() == "mean |IG| (years)"
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    volume = np.random.default_rng(0).random((30, 36, 30))
    fig = plots.t1_map(volume, affine, "map", units="years")
    assert fig.axes[-1].get_ylabel() == "years"
