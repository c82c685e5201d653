"""Every data-chapter figure renders from a generated cohort, with labelled axes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from amage_core.synth import figures  # noqa: E402


@pytest.mark.parametrize("name", ["age_sex_figure", "t1_slices_figure", "connectivity_figure",
                                  "effect_map_figure", "oracle_figure"])
def test_figure_renders(tiny_cohort, name):
    fig = getattr(figures, name)(tiny_cohort)
    fig.canvas.draw()
    labelled = [ax for ax in fig.axes if ax.get_xlabel() or ax.get_ylabel() or ax.get_title(loc="left")]
    assert labelled, name
    plt.close(fig)


def test_oracle_figure_with_calibration(tiny_cohort):
    table = pd.DataFrame({"model": ["t1", "fc", "t1+fc", "median age"], "mae": [6.0, 8.0, 5.0, 18.0]})
    fig = figures.oracle_figure(tiny_cohort, table)
    heights = sorted(round(p.get_height(), 3) for p in fig.axes[0].patches)
    assert {5.0, 6.0, 8.0} <= set(heights)
    plt.close(fig)


def test_young_old_connectivity_differs(tiny_cohort):
    p = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t").sort_values("age")
    young = figures.mean_connectivity(tiny_cohort, list(p["participant_id"][:6]), "dosenbach160")
    assert young.shape == (160, 160) and (young.diagonal() == 0).all()
