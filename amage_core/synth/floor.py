"""The reachable floor: the lowest error a model can reach from what a noise-free scan shows.

The oracle (:mod:`amage_core.synth.oracle`) reads each modality's *latent age* exactly; it is an
unreachable bound, because the generator draws per-participant scatter on the very parameters that
age drives, and no model can tell that scatter from ageing. The floor is the error of the
Bayes-optimal predictor given each participant's **noise-free generative parameters**: everything
the generator draws for a participant, with the scan's own randomness removed (image noise, bias
field, global gain, the realised motion trace and its artefact, the finite number of volumes).

What a noise-free scan determines, read from the generator's code
-----------------------------------------------------------------
* **fMRI** (:mod:`~amage_core.synth.function`). An infinitely long scan gives the expected
  correlation matrix: ``lambda_r lambda_s`` within a network, ``lambda_r lambda_s sqrt(rho_k rho_l)``
  between networks, so it determines every region's loading ``lambda_r`` and every network's
  coupling ``rho_k`` (:func:`~amage_core.synth.function.connectivity_parameters`). They scatter
  around their age-driven means (network loading SD 0.05, region loading SD 0.10, coupling SD
  0.06, with clipping) and the means depend on sex. Observed here: ``lambda`` (R,), ``rho`` (K,),
  sex. The per-region BOLD amplitude and motion weight are drawn too but carry no age information.
* **sMRI** (:mod:`~amage_core.synth.anatomy`). The T1 is a function of ``smri_age``, sex, head
  size, a smooth grey-matter field and a smooth deformation. The grey-matter field and the
  deformation confound the grey-matter loss, but the white-matter effects (white-matter fraction
  lost after 45, the white-matter intensity falling 1% per decade) have **no per-person scatter**:
  the intensity of pure white matter (relative to pure CSF, which removes any global gain) is a
  strictly monotone function of ``smri_age``. A noise-free T1 therefore determines ``smri_age``
  exactly, and the sMRI floor *equals* the sMRI oracle. What keeps real models from it is the image
  noise, the bias field and the coarse grid, which the floor excludes by definition.
* **Both**: ``smri_age`` exactly and the fMRI parameters above.
* **Not included**: the participant's mean framewise displacement. It is drawn around a trend in
  *chronological* age (log-SD 0.4 against a rise of log(1.12) per decade, i.e. a reading of age
  with an SD of about 35 years) and written exactly in the confounds; the models never see it.
  ``motion_channel`` in the result says how much the floor would drop if a model read it.

How it is computed (exact up to grids, no fitted model)
-------------------------------------------------------
Participants are drawn from the generator's own code paths (ages from the preset, the latent ages,
:func:`~amage_core.synth.function.connectivity_parameters`). For each, the likelihood of the
functional age ``a`` is evaluated on a grid: per network, the region loadings are independent
given the network loading ``m`` (Gaussian, censored at the clip limits), ``m`` is integrated out
against ``N(mu_k(a, sex), 0.05^2)`` on a grid of ``m``; each coupling has a censored Gaussian
likelihood. The posterior of chronological age multiplies the preset's age prior by that likelihood
integrated over ``a`` given age (and, for both, by the Gaussian joint of ``smri_age`` and ``a``
given age). The MAE uses the posterior median (minimum expected absolute error), the RMSE the
posterior mean (minimum expected squared error). ``mae_se`` is the Monte Carlo standard error.
Grid errors are far below it (the age grid is 0.2 years, the functional-age grid 0.5 years).

The estimate is exact for the generative model, not a fitted regressor's approximation, so it has
no upward bias from an imperfect model; a gradient-boosting regressor given the same parameters
lands just above it (``tests/synth/test_synth_floor.py``), which checks the computation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

from amage_core.data.atlas import Atlas
from amage_core.synth import function
from amage_core.synth.latent import rng_for, sample_ages
from amage_core.synth.oracle import posterior, posterior_median
from amage_core.synth.presets import Preset

STREAM_FLOOR = 6
FLOOR_DRAWS = 20000
AGE_STEP = 0.2        # years, chronological-age grid of the posterior
FAGE_STEP = 0.5       # years, functional-age grid of the likelihood
M_GRID = np.arange(0.0, 1.3001, 0.01)   # network loading grid (the loading's SD is 0.05)

ASSUMPTIONS = (
    "Reachable floor: the error of the Bayes-optimal predictor given each participant's noise-free "
    "generative parameters, i.e. what a scan without image noise, bias field, global gain, motion "
    "artefact or finite scan length shows. fMRI: every region's loading and every network's coupling "
    "(their per-person scatter included) and sex; the participant's mean framewise displacement is "
    "not read ('motion_channel' gives its worth). sMRI: the white-matter effects of age carry no "
    "per-person scatter, so a noise-free T1 determines the structural latent age exactly and the sMRI "
    "floor equals the sMRI oracle. Computed exactly on grids by Monte Carlo over the generative "
    "model (no fitted model): MAE of the posterior median, RMSE of the posterior mean, under the "
    "preset's age prior. Models on real scans cannot reach it in expectation; within 25% of it is the "
    "aim. See amage_core/synth/floor.py."
)


def sample_floor_parameters(preset: Preset, sds: dict[str, float], atlas: Atlas, networks: pd.DataFrame,
                            n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` participants' ages and noise-free parameters drawn as the generator draws them.

    Returns {"age" (n,), "sex" (n,) "M"/"F", "smri_age" (n,), "fmri_age" (n,), "loadings" (n, R),
    "couplings" (n, K), "log_fd" (n,) log of the mean framewise displacement}.
    """
    rng = rng_for(seed, STREAM_FLOOR)
    age = sample_ages(preset, n, rng)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    gap = rng.normal(0.0, sds["brain_age"], n)
    smri_age = age + gap + rng.normal(0.0, sds["smri"], n)
    fmri_age = age + gap + rng.normal(0.0, sds["fmri"], n)
    lam, rho = function.connectivity_parameters(atlas, networks, fmri_age, sex, rng)
    log_fd = _log_fd_trend(age, preset) + rng.normal(0.0, function.FD_LOG_SD, n)
    return {"age": age, "sex": sex, "smri_age": smri_age, "fmri_age": fmri_age, "loadings": lam,
            "couplings": rho, "log_fd": log_fd}


def _log_fd_trend(age: np.ndarray, preset: Preset) -> np.ndarray:
    """log of :func:`~amage_core.synth.function.mean_fd_target`'s trend in chronological age."""
    return np.log(preset.fd_at_20) + np.log(preset.fd_per_decade) * (np.asarray(age, float) - 20.0) / 10.0


def _norm(x: np.ndarray, sd: float) -> np.ndarray:
    return np.exp(-0.5 * (x / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def fmri_log_likelihood(params: dict[str, np.ndarray], atlas: Atlas, networks: pd.DataFrame,
                        fage: np.ndarray) -> np.ndarray:
    """(n, A) log-likelihood (up to a per-participant constant) of functional ages ``fage`` (A,)
    given each participant's loadings, couplings and sex (see the module docstring)."""
    lam, rho, sex = params["loadings"], params["couplings"], params["sex"]
    net_idx = function.module_index(atlas)
    n, n_net = lam.shape[0], rho.shape[1]
    lo, hi = function.LOADING_CLIP
    sd_r, sd_n = function.LOADING_SD, function.NETWORK_LOADING_SD
    out = np.zeros((n, len(fage)))
    # couplings: censored Gaussians around the expected coupling
    c = function.expected_coupling(fage)[None, None, :]                  # (1, 1, A)
    r = rho[:, :, None]
    clo, chi = function.COUPLING_CLIP
    sd_c = function.COUPLING_SD
    ll = np.where(r <= clo, log_ndtr((clo - c) / sd_c),
                  np.where(r >= chi, log_ndtr((c - chi) / sd_c), -0.5 * ((r - c) / sd_c) ** 2))
    out += ll.sum(axis=1)
    # loadings: per network, regions independent given the network loading m, m integrated out
    mu = {s: function.expected_module_loading(atlas, networks, fage, np.full(len(fage), s)) for s in ("F", "M")}
    m = M_GRID[None, :]
    for k in range(n_net):
        x = lam[:, net_idx == k]
        low, high = x <= lo, x >= hi
        inner = ~(low | high)
        n_in = inner.sum(axis=1)
        mean_in = np.where(n_in > 0, (x * inner).sum(axis=1) / np.maximum(n_in, 1), 0.0)
        logf = (-0.5 * n_in[:, None] * (mean_in[:, None] - m) ** 2 / sd_r ** 2
                + low.sum(axis=1)[:, None] * log_ndtr((lo - m) / sd_r)
                + high.sum(axis=1)[:, None] * log_ndtr((m - hi) / sd_r))          # (n, M)
        top = logf.max(axis=1, keepdims=True)
        f = np.exp(logf - top)
        for s in ("F", "M"):
            rows = sex == s
            kernel = _norm(M_GRID[:, None] - mu[s][None, :, k], sd_n)             # (M, A)
            out[rows] += np.log(f[rows] @ kernel + 1e-300) + top[rows]
    return out


def _median_and_mean(post: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior median and mean of densities ``post`` (n, G) on an even ``grid`` (G,)."""
    post = post / post.sum(axis=1, keepdims=True)
    mean = post @ grid
    cdf = np.cumsum(post, axis=1)
    j = np.minimum((cdf < 0.5).sum(axis=1), len(grid) - 1)
    rows = np.arange(post.shape[0])
    before = np.where(j > 0, cdf[rows, np.maximum(j - 1, 0)], 0.0)
    frac = (0.5 - before) / np.maximum(post[rows, j], 1e-300)
    step = grid[1] - grid[0]
    return grid[j] - step / 2 + frac * step, mean


def floor_predictions(params: dict[str, np.ndarray], preset: Preset, sds: dict[str, float], atlas: Atlas,
                      networks: pd.DataFrame, with_motion: bool = False,
                      chunk: int = 4000) -> dict[str, dict[str, np.ndarray]]:
    """Bayes-optimal predictions from noise-free parameters: {"smri"|"fmri"|"both": {"median", "mean"}}
    (each (n,)). ``with_motion``: also "fmri+motion" and "both+motion", which read the mean framewise
    displacement (``log_fd``) too."""
    from amage_core.synth.latent import age_prior

    b2, s2, f2 = sds["brain_age"] ** 2, sds["smri"] ** 2, sds["fmri"] ** 2
    spread = np.sqrt(b2 + max(s2, f2))
    ages = np.arange(preset.age_min, preset.age_max + 1e-9, AGE_STEP)
    fage = np.arange(preset.age_min - 6 * spread, preset.age_max + 6 * spread, FAGE_STEP)
    log_prior = np.log(age_prior(preset, ages) + 1e-300)
    # functional age given chronological age: N(age, b2 + f2)
    k_f = _norm(fage[:, None] - ages[None, :], np.sqrt(b2 + f2))                # (A, G)
    # both: smri_age S ~ N(age, b2 + s2); a | S, age ~ N(c S + (1 - c) age, v_c)
    c = b2 / (b2 + s2)
    v_c = b2 + f2 - b2 ** 2 / (b2 + s2)
    k_c = _norm(fage[:, None] - fage[None, :], np.sqrt(v_c))                    # (A, A): a, u
    n = len(params["age"])
    readings = {"": False, "+motion": True} if with_motion else {"": False}
    out = {k + r: {"median": np.empty(n), "mean": np.empty(n)} for k in ("fmri", "both") for r in readings}
    for start in range(0, n, chunk):
        part = {k: v[start:start + chunk] for k, v in params.items()}
        sl = slice(start, start + len(part["age"]))
        ll = fmri_log_likelihood(part, atlas, networks, fage)
        lik = np.exp(ll - ll.max(axis=1, keepdims=True))                         # (c, A)
        fmri_post = np.log(lik @ k_f + 1e-300)
        # both: the smoothed likelihood at u = c S + (1 - c) age, times N(S; age, b2 + s2)
        smooth = lik @ k_c                                                        # (c, A) over u
        s_age = part["smri_age"][:, None]
        pos = np.clip((c * s_age + (1 - c) * ages[None, :] - fage[0]) / FAGE_STEP, 0, len(fage) - 1.000001)
        i0 = pos.astype(int)
        w = pos - i0
        rows = np.arange(len(pos))[:, None]
        both_post = (np.log((1 - w) * smooth[rows, i0] + w * smooth[rows, i0 + 1] + 1e-300)
                     - 0.5 * (s_age - ages[None, :]) ** 2 / (b2 + s2))
        for suffix, motion in readings.items():
            extra = log_prior[None, :]
            if motion:
                extra = extra - 0.5 * ((part["log_fd"][:, None] - _log_fd_trend(ages, preset)[None, :])
                                       / function.FD_LOG_SD) ** 2
            for name, log_post in (("fmri", fmri_post + extra), ("both", both_post + extra)):
                post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
                out[name + suffix]["median"][sl], out[name + suffix]["mean"][sl] = _median_and_mean(post, ages)
    # sMRI: smri_age is determined exactly, so this is the oracle's predictor (truncated normal)
    v_s = b2 + s2
    out["smri"] = {"median": posterior_median(params["smri_age"], v_s, preset),
                   "mean": _truncnorm_mean(params["smri_age"], v_s, preset)}
    return out


def _truncnorm_mean(m: np.ndarray, v: float, preset: Preset) -> np.ndarray:
    from scipy.stats import truncnorm

    return truncnorm.mean(*posterior(m, v, preset))


def _errors(age: np.ndarray, pred: dict[str, np.ndarray]) -> dict[str, float]:
    err = np.abs(pred["median"] - age)
    return {"mae": float(err.mean()), "rmse": float(np.sqrt(np.mean((pred["mean"] - age) ** 2))),
            "mae_se": float(err.std(ddof=1) / np.sqrt(len(age)))}


def monte_carlo_floor(preset: Preset, sds: dict[str, float], atlas: Atlas, networks: pd.DataFrame | None = None,
                      n_draws: int = FLOOR_DRAWS, seed: int = 0) -> dict:
    """The population floor by Monte Carlo (see the module docstring).

    Returns {"smri"|"fmri"|"both": {"mae", "rmse", "mae_se"}, "motion_channel": {"fmri"|"both":
    {"mae"}} (the floor if the mean framewise displacement were read too), "n_draws", "seed",
    "assumptions"}.
    """
    networks = function.network_table(atlas) if networks is None else networks
    params = sample_floor_parameters(preset, sds, atlas, networks, n_draws, seed)
    preds = floor_predictions(params, preset, sds, atlas, networks, with_motion=True)
    out: dict = {name: _errors(params["age"], preds[name]) for name in ("smri", "fmri", "both")}
    out["motion_channel"] = {k: _errors(params["age"], preds[f"{k}+motion"]) for k in ("fmri", "both")}
    out.update({"n_draws": int(n_draws), "seed": int(seed), "assumptions": ASSUMPTIONS})
    return out


def parameter_features(params: dict[str, np.ndarray], atlas: Atlas, modality: str) -> np.ndarray:
    """(n, F) summary of the noise-free parameters a regressor can learn from: per network the mean
    region loading and the coupling, and sex (fmri); ``smri_age`` (smri); all of them (both)."""
    net_idx = function.module_index(atlas)
    lam = params["loadings"]
    means = np.stack([lam[:, net_idx == k].mean(axis=1) for k in range(int(net_idx.max()) + 1)], axis=1)
    fmri = np.column_stack([means, params["couplings"], params["sex"] == "M"])
    smri = params["smri_age"][:, None]
    return {"fmri": fmri, "smri": smri, "both": np.column_stack([fmri, smri])}[modality].astype(float)
