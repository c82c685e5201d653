"""Voxelwise BOLD, fMRIPrep-style confounds, and time series for further atlases.

The regional signals of :mod:`amage_core.synth.function` are laid into the MNI brain: every voxel
of the template brain mask (on the BOLD grid) belongs to its nearest atlas region (a Voronoi
parcellation around the atlas coordinates) and carries that region's signal, weighted by its grey-
matter fraction. On top come the nuisance sources that fMRIPrep's confounds describe and that
nilearn's ``load_confounds_strategy(..., "simple")`` removes (24 motion parameters, mean WM and
CSF signals, cosine drifts):

    y_v(t) = S0_v [1 + 0.01 (w_v q_L(v)(t) + phi_v . M(t) + tau_v . (D(t) + P(t)))] + noise

``q_r`` is the denoised regional signal in percent (what the XCP-D-style TSV holds, times
S0/100), ``M`` a motion artefact that is a linear combination of the motion parameters and their
derivatives with a spatial gradient ``phi_v = (1, x/70, y/90, z/70)``, ``D`` cosine drifts and
``P`` physiological noise per tissue (WM, CSF), ``tau_v`` the tissue fractions, ``noise`` thermal
noise. So extracting atlas spheres from the BOLD after confound regression gives back
approximately the TSV signals. The confound columns are computed from the same model: mean
signals over the brain (global), WM (WM fraction > 0.95) and CSF (> 0.7) masks, DVARS over the brain.

Shapes: voxel arrays are (N_vox,) over the brain mask; time series (T, R) or (T, N_vox).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from amage_core.data.atlas import Atlas
from amage_core.synth.anatomy import load_template, world_coords
from amage_core.synth.function import HEAD_RADIUS_MM, FunctionSample, framewise_displacement, hrf_noise
from amage_core.synth.presets import Preset

MOTION_ARTEFACT = 0.4       # percent signal change per mm of displacement (sd of the coefficients)
DRIFT_PERCENT = 1.0         # sd of the first cosine drift (percent); later ones fall as 1/k
PHYSIO_PERCENT = {"wm": 0.3, "csf": 1.0}
EXTRA_ATLAS_NOISE = 0.5     # independent fine-scale signal in a further atlas's regions (relative sd)
HIGH_PASS_S = 128.0         # fMRIPrep's DCT cut-off period
FD_OUTLIER = 0.5            # fMRIPrep's motion_outlier thresholds
STD_DVARS_OUTLIER = 1.5


@dataclass
class BoldModel:
    """The BOLD grid and each brain voxel's properties."""

    affine: np.ndarray          # (4, 4)
    shape: tuple[int, int, int]
    voxels: np.ndarray          # (N_vox, 3) integer indices of brain voxels
    xyz: np.ndarray             # (N_vox, 3) MNI mm
    label: np.ndarray           # (N_vox,) nearest atlas region
    tissue: np.ndarray          # (N_vox, 3) GM, WM, CSF fractions
    neural_weight: np.ndarray   # (N_vox,) w_v
    s0: np.ndarray              # (N_vox,) baseline intensity relative to the preset's S0
    phi: np.ndarray             # (N_vox, 4) spatial pattern of the motion artefact
    wm_mask: np.ndarray         # (N_vox,) bool
    csf_mask: np.ndarray        # (N_vox,) bool
    n_regions: int

    def features(self) -> np.ndarray:
        """(N_vox, R + 7) each voxel's percent signal as a linear map of [q (R), M (4), D + P (3)]."""
        onehot = np.zeros((len(self.label), self.n_regions))
        onehot[np.arange(len(self.label)), self.label] = self.neural_weight
        return np.hstack([onehot, self.phi, self.tissue])

    @functools.cached_property
    def means(self) -> dict[str, np.ndarray]:
        """(R + 7,) mean of S0_v * features over the brain, WM and CSF masks."""
        f = self.features() * self.s0[:, None]
        return {"global": f.mean(axis=0), "white_matter": f[self.wm_mask].mean(axis=0),
                "csf": f[self.csf_mask].mean(axis=0),
                "s0": np.array([self.s0.mean(), self.s0[self.wm_mask].mean(), self.s0[self.csf_mask].mean()])}

    @functools.cached_property
    def gram(self) -> np.ndarray:
        """(R + 7, R + 7) mean over brain voxels of (S0_v f_v)(S0_v f_v)^T: DVARS without voxels."""
        f = self.features() * self.s0[:, None]
        return f.T @ f / len(f)


@functools.lru_cache(maxsize=4)
def _bold_model_cached(voxel_size: float, coords_key: tuple) -> BoldModel:
    coords = np.array(coords_key, dtype=float)
    mask_img = load_template("mask", voxel_size)
    mask = mask_img.get_fdata() > 0.5
    gm = np.clip(load_template("gm", voxel_size).get_fdata(), 0, 1)[mask]
    wm = np.clip(load_template("wm", voxel_size).get_fdata(), 0, 1)[mask]
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.clip(1.0 - gm - wm, 0, 1)
    voxels = np.argwhere(mask)
    xyz = np.moveaxis(world_coords(mask.shape, mask_img.affine), 0, -1)[mask].astype(float)
    label = cKDTree(coords).query(xyz)[1]
    tissue = np.column_stack([gm, wm, csf])

    def top_or_threshold(frac: np.ndarray, thr: float) -> np.ndarray:
        sel = frac > thr
        if sel.sum() < 10:
            sel = np.zeros(len(frac), bool)
            sel[np.argsort(frac)[-10:]] = True
        return sel

    return BoldModel(
        affine=mask_img.affine.copy(), shape=tuple(mask.shape), voxels=voxels, xyz=xyz, label=label,
        tissue=tissue, neural_weight=gm,
        s0=0.85 * gm + 0.75 * wm + 1.3 * csf,
        phi=np.column_stack([np.ones(len(xyz)), xyz[:, 0] / 70, xyz[:, 1] / 90, xyz[:, 2] / 70]),
        wm_mask=top_or_threshold(wm, 0.95), csf_mask=top_or_threshold(csf, 0.7), n_regions=len(coords),
    )


def build_bold_model(voxel_size: float, atlas: Atlas) -> BoldModel:
    """The BOLD grid at ``voxel_size`` mm with voxels assigned to ``atlas`` regions (cached)."""
    return _bold_model_cached(float(voxel_size), tuple(map(tuple, atlas.coords.round(3))))


def cosine_basis(n_volumes: int, tr: float) -> np.ndarray:
    """(T, C) DCT high-pass regressors as fMRIPrep's cosineNN (period cut-off 128 s)."""
    n = int(np.floor(2 * n_volumes * tr / HIGH_PASS_S))
    t = np.arange(n_volumes)
    return np.column_stack([np.sqrt(2.0 / n_volumes) * np.cos(np.pi * (t + 0.5) * k / n_volumes)
                            for k in range(1, n + 1)]) if n else np.zeros((n_volumes, 0))


@dataclass
class Nuisance:
    """One participant's nuisance sources (percent signal change)."""

    motion_artefact: np.ndarray   # (T, 4) M(t): coefficients of phi_v
    tissue: np.ndarray            # (T, 3) drifts + physiological noise of GM, WM, CSF


def simulate_nuisance(fs: FunctionSample, n_volumes: int, tr: float, rng: np.random.Generator) -> Nuisance:
    """Motion artefact, drifts and physiological noise for one scan."""
    p_mm = fs.motion * np.r_[1, 1, 1, [HEAD_RADIUS_MM] * 3]
    design = np.column_stack([p_mm, np.vstack([np.zeros((1, 6)), np.diff(p_mm, axis=0)])])   # (T, 12)
    coef = rng.normal(0.0, MOTION_ARTEFACT, (12, 4))
    cos = cosine_basis(n_volumes, tr)
    k = np.arange(1, cos.shape[1] + 1)
    drift = cos @ (rng.normal(0.0, DRIFT_PERCENT, (cos.shape[1], 3)) / k[:, None]) * np.sqrt(n_volumes / 2)
    physio = np.column_stack([np.zeros(n_volumes),
                              rng.normal(0, PHYSIO_PERCENT["wm"], n_volumes),
                              rng.normal(0, PHYSIO_PERCENT["csf"], n_volumes)])
    return Nuisance(motion_artefact=design @ coef, tissue=drift + physio)


def voxel_percent(model: BoldModel, fs: FunctionSample, nuis: Nuisance) -> np.ndarray:
    """(T, N_vox) percent signal change of every brain voxel, before thermal noise."""
    q = fs.percent
    return (q[:, model.label] * model.neural_weight + nuis.motion_artefact @ model.phi.T
            + nuis.tissue @ model.tissue.T)


def confounds_table(model: BoldModel, fs: FunctionSample, nuis: Nuisance, preset: Preset, tr: float) -> pd.DataFrame:
    """fMRIPrep-style confounds (T rows). First-row derivatives, FD and DVARS are NaN ("n/a").

    Mean signals and DVARS are computed exactly from the voxel model through
    :attr:`BoldModel.means` and :attr:`BoldModel.gram`, without building the voxel time series.
    """
    n_volumes = fs.motion.shape[0]
    sources = np.hstack([fs.percent, nuis.motion_artefact, nuis.tissue])       # (T, R + 7)
    s0, m = preset.bold_s0, model.means
    cols: dict[str, np.ndarray] = {
        "global_signal": s0 * (m["s0"][0] + 0.01 * sources @ m["global"]),
        "csf": s0 * (m["s0"][2] + 0.01 * sources @ m["csf"]),
        "white_matter": s0 * (m["s0"][1] + 0.01 * sources @ m["white_matter"]),
    }
    sigma = preset.bold_noise * preset.bold_s0
    step = np.diff(sources, axis=0) * 0.01 * s0
    dvars = np.sqrt(np.einsum("ti,ij,tj->t", step, model.gram, step) + 2 * sigma ** 2)
    dvars = np.concatenate([[np.nan], dvars])
    std_dvars = dvars / np.nanmedian(dvars)
    fd = framewise_displacement(fs.motion)
    fd[0] = np.nan
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    cols.update({n: fs.motion[:, i] for i, n in enumerate(names)})
    table = {}
    for name, x in cols.items():
        d = np.concatenate([[np.nan], np.diff(x)])
        table.update({name: x, f"{name}_derivative1": d, f"{name}_power2": x ** 2,
                      f"{name}_derivative1_power2": d ** 2})
    table.update({"framewise_displacement": fd, "dvars": dvars, "std_dvars": std_dvars})
    cos = cosine_basis(n_volumes, tr)
    table.update({f"cosine{i:02d}": cos[:, i] for i in range(cos.shape[1])})
    outliers = np.flatnonzero((np.nan_to_num(fd) > FD_OUTLIER) | (np.nan_to_num(std_dvars) > STD_DVARS_OUTLIER))
    for j, t in enumerate(outliers):
        col = np.zeros(n_volumes)
        col[t] = 1.0
        table[f"motion_outlier{j:02d}"] = col
    return pd.DataFrame(table)


def bold_image_data(model: BoldModel, preset: Preset, percent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(X, Y, Z, T) int16 BOLD volume with thermal noise; zero outside the brain mask."""
    s0 = preset.bold_s0 * model.s0
    y = s0 * (1.0 + 0.01 * percent)
    y += preset.bold_noise * preset.bold_s0 * rng.standard_normal(y.shape)
    data = np.zeros(model.shape + (percent.shape[0],), dtype=np.int16)
    data[model.voxels[:, 0], model.voxels[:, 1], model.voxels[:, 2], :] = np.clip(np.round(y.T), 0, 32767)
    return data


@functools.lru_cache(maxsize=8)
def _extra_weights_cached(voxel_size: float, source_key: tuple, target_key: tuple, radius: float) -> np.ndarray:
    model = _bold_model_cached(voxel_size, source_key)
    n_source = len(source_key)
    target = np.array(target_key, dtype=float)
    tree = cKDTree(model.xyz)
    w = model.neural_weight * model.s0
    weights = np.zeros((len(target), n_source))
    for j, c in enumerate(target):
        idx = tree.query_ball_point(c, radius)
        if not idx:
            idx = [int(tree.query(c)[1])]
        np.add.at(weights[j], model.label[idx], w[idx])
    return weights / weights.sum(axis=1, keepdims=True)


def extra_atlas_weights(voxel_size: float, source: Atlas, target: Atlas) -> np.ndarray:
    """(R_target, R_source) share of each source region's signal inside each target sphere."""
    return _extra_weights_cached(float(voxel_size), tuple(map(tuple, source.coords.round(3))),
                                 tuple(map(tuple, target.coords.round(3))), float(target.radius_mm))


def extra_atlas_percent(weights: np.ndarray, fs: FunctionSample, tr: float, rng: np.random.Generator) -> np.ndarray:
    """(T, R_target) percent signal of a further atlas: mixed source signals + fine-scale signal."""
    q = fs.percent @ weights.T
    own = hrf_noise(rng, q.shape[0], q.shape[1], tr)
    return q + EXTRA_ATLAS_NOISE * q.std(axis=0) * own
