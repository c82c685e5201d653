"""The oracle: the lowest age-prediction error any model could reach on a synthetic cohort.

What the oracle assumes
-----------------------
It is an *ideal observer of the latent ages*. A model given the sMRI of a participant can at best
recover that participant's ``smri_age`` exactly (as if every effect of ageing in the image could be
inverted without error and every nuisance - anatomy, head size, noise, bias field, scanner - could
be removed); likewise ``fmri_age`` from the fMRI, and both from both. What remains is the noise that
is part of the generative model itself (:mod:`amage_core.synth.latent`)::

    smri_age = age + gap + smri_dev,   fmri_age = age + gap + fmri_dev
    gap ~ N(0, brain_age_sd^2),  smri_dev ~ N(0, smri_sd^2),  fmri_dev ~ N(0, fmri_sd^2)

Given the observed latent ages ``a`` of a set of modalities, the likelihood of chronological age A
is Gaussian in the generalised-least-squares combination ``m = 1'S^-1 a / 1'S^-1 1`` with variance
``v = 1 / 1'S^-1 1`` (S = the modalities' covariance: brain_age_sd^2 everywhere plus each
modality's own variance on the diagonal). The oracle predicts the posterior *median* of A under the
preset's age prior, which minimises the expected absolute error, so no predictor of the same
information has a lower MAE (the posterior is a truncated normal, its median has a closed form).
The bound is estimated by Monte Carlo: draw (A, gap, devs) from the generative model, predict,
average |error|.

Because real models must also see through the image-level variation, the oracle is a lower bound,
not a target. It is an **unreachable** bound: the generator adds per-participant scatter to the very
parameters that age drives (network loadings and couplings, a grey-matter field), which no model can
tell apart from ageing. The reachable bound is the **floor** (:mod:`amage_core.synth.floor`); models
are measured against the floor, and the oracle is shown beside it. The oracle is reported twice: for
the population (Monte Carlo, with its standard error) and for this cohort's actual latent values.
"""
from __future__ import annotations

import numpy as np

from amage_core.synth.latent import age_prior, rng_for, sample_ages, STREAM_ORACLE
from amage_core.synth.presets import Preset

ASSUMPTIONS = (
    "Unreachable bound. Ideal observer of the latent ages: a model of a modality recovers that modality's latent age "
    "(smri_age, fmri_age) exactly, i.e. every image-level nuisance (anatomy, head size, noise, bias, "
    "scanner, motion, finite scan length) is removed perfectly. What is left is the generative "
    "model's own noise: the shared brain-age gap and each modality's deviation. The prediction is the "
    "posterior median of chronological age under the preset's age prior (minimum expected absolute "
    "error); 'population' is a Monte Carlo estimate over the generative model, 'cohort' uses this "
    "cohort's latent ages. It ignores the per-person scatter the generator adds to the parameters "
    "that age drives, so no model can reach it; 'floor' is the reachable bound."
)

MODALITY_SETS: dict[str, tuple[str, ...]] = {"smri": ("smri",), "fmri": ("fmri",), "both": ("smri", "fmri")}


def _covariance(mods: tuple[str, ...], sds: dict[str, float]) -> np.ndarray:
    """(M, M) covariance of the modalities' latent ages around chronological age."""
    cov = np.full((len(mods), len(mods)), sds["brain_age"] ** 2)
    cov[np.diag_indices(len(mods))] += [sds[m] ** 2 for m in mods]
    return cov


def combine(latent: np.ndarray, mods: tuple[str, ...], sds: dict[str, float]) -> tuple[np.ndarray, float]:
    """GLS combination of observed latent ages.

    latent: (n, M) latent ages of the modalities in ``mods``. Returns (m (n,), variance v).
    """
    prec = np.linalg.inv(_covariance(mods, sds))
    weights = prec.sum(axis=0)
    total = weights.sum()
    return latent @ (weights / total), 1.0 / total


def posterior_median(m: np.ndarray, v: float, preset: Preset) -> np.ndarray:
    """(n,) posterior median of chronological age given GLS statistics ``m`` (n,) of variance ``v``.

    The likelihood is N(m; A, v) and the prior uniform or normal on [age_min, age_max], so the
    posterior is a truncated normal and its median has a closed form.
    """
    from scipy.stats import truncnorm

    return truncnorm.ppf(0.5, *posterior(m, v, preset))


def posterior(m: np.ndarray, v: float, preset: Preset) -> tuple[np.ndarray, ...]:
    """The truncated-normal posterior of age given GLS statistics ``m`` (n,) of variance ``v``, as
    scipy's ``truncnorm`` arguments: (a, b, loc, scale), each (n,)."""
    m = np.asarray(m, dtype=float)
    if preset.age_distribution == "uniform":
        mean, var = m, np.full_like(m, v)
    else:
        prec = 1.0 / v + 1.0 / preset.age_sd ** 2
        mean, var = (m / v + preset.age_mean / preset.age_sd ** 2) / prec, np.full_like(m, 1.0 / prec)
    sd = np.sqrt(var)
    return (preset.age_min - mean) / sd, (preset.age_max - mean) / sd, mean, sd


def oracle_predictions(latent: dict[str, np.ndarray], sds: dict[str, float], preset: Preset) -> dict[str, np.ndarray]:
    """Oracle age predictions from latent ages: {"smri"|"fmri"|"both": (n,)}.

    latent: {"smri": (n,), "fmri": (n,)} observed latent ages; sds: brain_age, smri, fmri sds.
    """
    preds = {}
    for name, mods in MODALITY_SETS.items():
        m, v = combine(np.column_stack([latent[k] for k in mods]), mods, sds)
        preds[name] = posterior_median(m, v, preset)
    return preds


def monte_carlo_oracle(preset: Preset, sds: dict[str, float], n_draws: int = 20000, seed: int = 0) -> dict:
    """Population oracle by Monte Carlo from the generative model.

    Returns {"smri"|"fmri"|"both": {"mae", "rmse", "mae_se"}} plus n_draws and seed.
    """
    rng = rng_for(seed, STREAM_ORACLE)
    age = sample_ages(preset, n_draws, rng)
    gap = rng.normal(0, sds["brain_age"], n_draws)
    latent = {m: age + gap + rng.normal(0, sds[m], n_draws) for m in ("smri", "fmri")}
    out: dict = {"n_draws": int(n_draws), "seed": int(seed)}
    for name, pred in oracle_predictions(latent, sds, preset).items():
        err = np.abs(pred - age)
        out[name] = {
            "mae": float(err.mean()),
            "rmse": float(np.sqrt(np.mean(err ** 2))),
            "mae_se": float(err.std(ddof=1) / np.sqrt(n_draws)),
        }
    return out


def cohort_oracle(age: np.ndarray, latent: dict[str, np.ndarray], sds: dict[str, float], preset: Preset) -> dict:
    """Oracle MAE/RMSE on one cohort's actual latent ages: {"smri"|"fmri"|"both": {"mae", "rmse"}}."""
    out = {}
    for name, pred in oracle_predictions(latent, sds, preset).items():
        err = pred - age
        out[name] = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}
    return out
