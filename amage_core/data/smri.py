"""T1 -> one brain-masked, robustly normalised grid shared by every participant.

``t1_source``:
- ``"fmriprep"`` (and ``"auto"``): the fMRIPrep ``space-MNI152NLin2009cAsym_desc-preproc_T1w``
  and its ``desc-brain_mask`` (the MNI152 brain mask when the participant's is absent), resampled
  with ``nilearn.image.resample_img`` onto a fixed MNI grid: the bounding box of the MNI152 brain
  mask plus ``t1_crop_margin`` voxels, isotropic voxels, ``t1_shape`` voxels. The box is the same
  for everyone (a per-participant box would rescale each brain to fill the grid and erase head
  size, an age signal). Intensities are scaled so that the ``t1_percentiles`` (1st, 99th) inside
  the mask map to 0 and 1 (clipped); outside the mask is 0.
- ``"resize"``: the AMAge-Net authors' preprocessing, kept to measure it: the whole native volume
  (no registration, no skull stripping) linearly zoomed to ``t1_shape`` (``scipy.ndimage.zoom``)
  and min-max scaled to [0, 1]. Heads differ in size and position across participants.
- ``"register"``: affine registration of a raw T1 to MNI152 is not built in (antspyx, the library
  for it, requires numpy<2.4 and scipy<1.16, which conflict with this project's pins); it raises
  a ValueError that says what to do instead.
"""
from __future__ import annotations

import functools

import numpy as np

from amage_core.config import PrepConfig
from amage_core.data.fmri import READ_ERRORS
from amage_core.data.qc import (EMPTY_IMAGE, MISMATCHED_GRID, MISSING_MODALITY, UNREADABLE_NIFTI,
                                WRONG_DIM, QCError)

REGISTER_UNAVAILABLE = (
    "t1_source='register' (affine registration of raw T1 to MNI152) is not available: antspyx "
    "requires numpy<2.4 and scipy<1.16, incompatible with this project's pinned stack. Run "
    "fMRIPrep (its space-MNI152NLin2009cAsym_desc-preproc_T1w is used with t1_source='fmriprep' or "
    "'auto'), or use t1_source='resize' for the authors' whole-volume resize."
)


@functools.lru_cache(maxsize=8)
def target_grid(shape: tuple[int, int, int], margin: int) -> np.ndarray:
    """4x4 affine of the shared MNI grid: MNI152 brain bounding box + ``margin`` voxels, isotropic."""
    from nibabel.affines import apply_affine
    from nilearn.datasets import load_mni152_brain_mask

    mask = load_mni152_brain_mask(resolution=2)
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
    corners = apply_affine(mask.affine, np.stack([ijk.min(0), ijk.max(0)]))
    lo, hi = corners.min(0), corners.max(0)
    shape_arr = np.asarray(shape, dtype=float)
    inner = np.maximum(shape_arr - 2 * margin - 1, 1)
    voxel = float(np.max((hi - lo) / inner))
    origin = (lo + hi) / 2 - voxel * (shape_arr - 1) / 2
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = origin
    return affine


def _load(path, participant: str):
    """A 3D image (a 4D image with one volume is accepted) with its data read (detects truncation).

    A singular or non-finite affine, or any NaN/inf voxel, is a QCError (resampling would
    otherwise fail deep in nibabel, or silently fill the bad voxels with zeros).
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj, dtype=np.float32)
    except (nib.filebasedimages.ImageFileError, *READ_ERRORS) as exc:
        raise QCError(participant, path, f"{UNREADABLE_NIFTI}: {type(exc).__name__}: {exc}") from exc
    affine = img.affine
    if affine is None or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        matrix = None if affine is None else np.round(affine, 3).tolist()
        raise QCError(participant, path, f"{UNREADABLE_NIFTI}: singular or non-finite affine {matrix}")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise QCError(participant, path, f"{WRONG_DIM}: T1 has shape {data.shape}, expected 3D")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise QCError(participant, path, f"{UNREADABLE_NIFTI}: {bad} non-finite (NaN/inf) voxel(s)")
    return nib.Nifti1Image(data, affine)


def normalise(t1: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Percentile scale inside ``mask`` -> [0, 1] (clipped), 0 outside. Shapes (D, H, W)."""
    inside = t1[mask]
    lo, hi = np.percentile(inside, percentiles)
    if not hi > lo:
        raise ValueError("constant intensity inside the brain mask")
    out = np.clip((t1 - lo) / (hi - lo), 0.0, 1.0)
    out[~mask] = 0.0
    return out.astype(np.float32)


def mni_t1(t1_path, mask_path, cfg: PrepConfig, participant: str) -> np.ndarray:
    """(D, H, W) float32 brain-masked, normalised T1 on the shared MNI grid."""
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    img = _load(t1_path, participant)
    mask_img = _load(mask_path, participant) if mask_path is not None else load_mni152_brain_mask(resolution=2)
    if mask_path is not None and (mask_img.shape != img.shape
                                  or not np.allclose(mask_img.affine, img.affine, atol=1e-2)):
        raise QCError(participant, mask_path, f"{MISMATCHED_GRID}: the brain mask's grid (shape "
                                              f"{mask_img.shape}) is not the T1's ({img.shape}, {t1_path}): "
                                              "the mask would not cover the brain")
    shape = tuple(cfg.t1_shape)
    affine = target_grid(shape, cfg.t1_crop_margin)
    kw = dict(target_affine=affine, target_shape=shape, force_resample=True, copy_header=True)
    t1 = np.asarray(resample_img(img, interpolation="continuous", **kw).dataobj, dtype=np.float32)
    mask = np.asarray(resample_img(mask_img, interpolation="nearest", **kw).dataobj) > 0.5
    if mask.sum() < 10:
        raise QCError(participant, mask_path or t1_path,
                      f"{EMPTY_IMAGE}: brain mask covers {int(mask.sum())} voxels of the MNI grid")
    try:
        return normalise(t1, mask, tuple(cfg.t1_percentiles))
    except ValueError as exc:
        raise QCError(participant, t1_path, f"{EMPTY_IMAGE}: {exc}") from exc


def resized_t1(t1_path, shape: tuple[int, int, int], participant: str) -> np.ndarray:
    """The authors' preprocessing: whole volume zoomed (linear) to ``shape``, min-max to [0, 1]."""
    from scipy.ndimage import zoom

    data = np.asarray(_load(t1_path, participant).dataobj, dtype=np.float32)
    factors = [s / d for s, d in zip(shape, data.shape)]
    out = zoom(data, factors, order=1)[: shape[0], : shape[1], : shape[2]]
    lo, hi = float(out.min()), float(out.max())
    if not hi > lo:
        raise QCError(participant, t1_path, f"{EMPTY_IMAGE}: constant T1")
    return ((out - lo) / (hi - lo)).astype(np.float32)


def participant_t1(record, cfg: PrepConfig) -> np.ndarray:
    """(D, H, W) float32 T1 of one participant per ``cfg.t1_source``; QCError with the reason."""
    pid = record.participant_id
    if cfg.t1_source == "register":
        raise ValueError(REGISTER_UNAVAILABLE)
    if cfg.t1_source == "resize":
        path = record.t1_raw or record.t1_mni
        if path is None:
            raise QCError(pid, None, f"{MISSING_MODALITY}: T1 (no raw T1w and no fMRIPrep T1w)")
        return resized_t1(path, tuple(cfg.t1_shape), pid)
    if record.t1_mni is None:
        hint = (f"; raw T1 at {record.t1_raw}: run fMRIPrep, or set t1_source='resize'"
                if record.t1_raw is not None else "")
        raise QCError(pid, record.t1_raw, f"{MISSING_MODALITY}: T1 in MNI space (no fMRIPrep "
                                          f"space-MNI152NLin2009cAsym_desc-preproc_T1w{hint})")
    return mni_t1(record.t1_mni, record.brain_mask, cfg, pid)
