"""Who is in the cohort: chronological age, sex and the latent ages that drive each modality.

Generative model (one participant)::

    age          ~ preset age distribution (uniform 18-89 for camcan-like; normal(70, 9)
                   truncated to 42-95 for oasis3-like), rounded to 0.1 year
    sex          ~ Bernoulli(0.5)  (M/F)
    brain_age    = age + gap,                gap   ~ N(0, brain_age_sd^2)
    smri_age     = brain_age + smri_dev,     smri_dev ~ N(0, smri_deviation_sd^2)
    fmri_age     = brain_age + fmri_dev,     fmri_dev ~ N(0, fmri_deviation_sd^2)

``brain_age`` is the biological age both modalities share (the quantity brain-age studies want to
read out; its gap is what correlates with health). The structural images age according to
``smri_age`` and the connectomes according to ``fmri_age``: each modality carries its own
deviation, so combining both averages the modality-specific parts away and can beat either alone
(Engemann et al. 2020 found exactly this additivity of MRI and fMRI on Cam-CAN), while the shared
gap can never be averaged away. Head motion follows chronological age, not brain age (it is a
behavioural confound, Savalia et al. 2017).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from amage_core.config import SynthConfig
from amage_core.synth.presets import Preset

# Independent random streams (SeedSequence spawn keys) so that changing one part of the
# generator never changes the random numbers another part draws.
STREAM_COHORT = 1
STREAM_ORACLE = 2
STREAM_ANATOMY = 3
STREAM_FUNCTION = 4
STREAM_BOLD = 5


def rng_for(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """A generator for (cohort seed, stream, participant index): independent of ``n_jobs``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(index)]))


def sample_ages(preset: Preset, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) chronological ages from the preset's distribution, rounded to 0.1 year."""
    if preset.age_distribution == "uniform":
        ages = rng.uniform(preset.age_min, preset.age_max, size=n)
    else:
        from scipy.stats import truncnorm

        a = (preset.age_min - preset.age_mean) / preset.age_sd
        b = (preset.age_max - preset.age_mean) / preset.age_sd
        ages = truncnorm.rvs(a, b, loc=preset.age_mean, scale=preset.age_sd, size=n, random_state=rng)
    return np.clip(np.round(ages, 1), preset.age_min, preset.age_max)


def age_prior(preset: Preset, grid: np.ndarray) -> np.ndarray:
    """(G,) prior density of chronological age on ``grid`` (normalised to sum 1)."""
    inside = (grid >= preset.age_min) & (grid <= preset.age_max)
    if preset.age_distribution == "uniform":
        pdf = inside.astype(float)
    else:
        pdf = np.exp(-0.5 * ((grid - preset.age_mean) / preset.age_sd) ** 2) * inside
    return pdf / pdf.sum()


def sample_participants(cfg: SynthConfig, preset: Preset) -> pd.DataFrame:
    """One row per participant: ids, age, sex and the latent ages (see the module docstring).

    Columns: participant_id, age, sex, brain_age, brain_age_gap, smri_deviation, fmri_deviation,
    smri_age, fmri_age, has_bold_nifti.
    """
    if cfg.n_subjects < 1:
        raise ValueError(f"synth: n_subjects must be at least 1, got {cfg.n_subjects}")
    if not 0 <= cfg.n_bold_nifti <= cfg.n_subjects:
        raise ValueError(
            f"synth: n_bold_nifti must be between 0 and n_subjects={cfg.n_subjects}, got {cfg.n_bold_nifti}"
        )
    rng = rng_for(cfg.seed, STREAM_COHORT)
    n = cfg.n_subjects
    age = sample_ages(preset, n, rng)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    gap = rng.normal(0.0, cfg.brain_age_sd, n)
    smri_dev = rng.normal(0.0, cfg.smri_deviation_sd, n)
    fmri_dev = rng.normal(0.0, cfg.fmri_deviation_sd, n)
    brain_age = age + gap
    # The BOLD NIfTI subset spreads over the age range: every k-th participant in age order.
    order = np.argsort(age, kind="stable")
    bold = np.zeros(n, dtype=bool)
    if cfg.n_bold_nifti:
        bold[order[np.linspace(0, n - 1, cfg.n_bold_nifti).round().astype(int)]] = True
    return pd.DataFrame({
        "participant_id": [f"sub-{i + 1:04d}" for i in range(n)],
        "age": age,
        "sex": sex,
        "brain_age": brain_age,
        "brain_age_gap": gap,
        "smri_deviation": smri_dev,
        "fmri_deviation": fmri_dev,
        "smri_age": brain_age + smri_dev,
        "fmri_age": brain_age + fmri_dev,
        "has_bold_nifti": bold,
    })
