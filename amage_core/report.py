"""Tables that chapters show: the profile in use and the paper's claims beside this repository's results."""
from __future__ import annotations

import pandas as pd

from amage_core.config import Profile, load_profile, to_dict

# The authors' reported results (abstract of the paper), quoted for comparison only.
PAPER_CLAIMS = {
    "camcan": {"mae": 5.09, "rmse": 6.52, "r2": 0.87, "r": 0.94},
    "oasis3": {"mae": 4.29, "rmse": 5.59, "r2": 0.58, "r": 0.77},
}


def load(profile: str | Profile) -> Profile:
    """A profile by name/path, or the object itself."""
    return profile if isinstance(profile, Profile) else load_profile(profile)


def profile_summary(profile: Profile) -> pd.DataFrame:
    """One row per setting that shapes the results (cohorts, grids, model sizes, training)."""
    rows = [("profile", "name", profile.name), ("profile", "description", profile.description)]
    for name, c in profile.cohorts.items():
        where = (f"synthetic {c.synth.preset}, n={c.synth.n_subjects}, {c.synth.voxel_size:g} mm, "
                 f"seed {c.synth.seed}" if c.source == "synthetic" else f"{c.source} data")
        rows.append(("cohort", name, where))
    rows.append(("prep", "atlas", profile.prep.atlas))
    rows.append(("prep", "T1 grid", "x".join(map(str, profile.prep.t1_shape))))
    t = profile.train
    rows.append(("train", "protocol", f"{t.folds}-fold CV ({t.protocol}), {t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g}, seed {t.seed}"))
    m = to_dict(profile.model)
    rows.append(("model", "GAT", str(m["gat"])))
    rows.append(("model", "DenseNet", str(m["densenet"])))
    rows.append(("model", "fusion", str(m["fusion"])))
    return pd.DataFrame(rows, columns=["section", "setting", "value"]).set_index(["section", "setting"])
