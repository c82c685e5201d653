"""Synthetic lifespan cohorts with known ground truth (``amage synth``).

Modules: :mod:`~amage_core.synth.presets` (scanner/cohort presets), :mod:`~.latent` (ages, sex,
latent brain age and each modality's deviation), :mod:`~.anatomy` (structural ageing on the MNI152
templates), :mod:`~.function` (network time series, motion), :mod:`~.bold` (voxelwise BOLD and
confounds), :mod:`~.bids` (file names and writers), :mod:`~.oracle` (best achievable MAE),
:mod:`~.cohort` (the generator and the truth reader), :mod:`~.calibrate` (classical-model check),
:mod:`~.figures` (figures for the data chapter).

Public API: ``generate_cohort(cfg, out, n_jobs=1, progress=True) -> Path`` and
``load_truth(root) -> Truth``. Imports are lazy so that ``amage --help`` stays fast.
"""
from __future__ import annotations

__all__ = ["generate_cohort", "load_truth", "Truth"]


def __getattr__(name: str):
    if name in __all__:
        from amage_core.synth import cohort

        return getattr(cohort, name)
    raise AttributeError(f"module 'amage_core.synth' has no attribute {name!r}")
