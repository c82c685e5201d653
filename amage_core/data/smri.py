"""T1 -> one brain-masked, robustly normalised grid shared by every participant.

``t1_source``:
- ``"fmriprep"``: the fMRIPrep ``space-MNI152NLin2009cAsym_desc-preproc_T1w`` and its
  ``desc-brain_mask`` (the MNI152 brain mask when the participant's is absent), resampled with
  ``nilearn.image.resample_img`` onto a fixed MNI grid: the bounding box of the MNI152 brain mask
  plus ``t1_crop_margin`` voxels, isotropic voxels, ``t1_shape`` voxels. The box is the same for
  everyone (a per-participant box would rescale each brain to fill the grid and erase head size,
  an age signal). Intensities are scaled so that the ``t1_percentiles`` (1st, 99th) inside the
  mask map to 0 and 1 (clipped); outside the mask is 0. The file name says "MNI", the header may
  not: each T1 is compared with nilearn's MNI152 template at 6 mm (:func:`check_mni_space`,
  settings :data:`SPACE_CHECK`): a brain mask that overlaps the template's by Dice < 0.8 (a wrong
  voxel size, a shift, another space) or a T1 that correlates r < 0.4 with the template inside its
  brain mask (a shift, inverted T2w-like contrast) excludes the participant with reason
  ``wrong space``.
- ``"register"``: the raw, native-space T1w (Cam-CAN ``anat``, OASIS-3 ``anat``, a raw BIDS
  ``anat``: no fMRIPrep needed) registered to nilearn's MNI152 template (2 mm, shipped with
  nilearn) by SimpleITK: moments (centre-of-mass) initialisation, then a rigid stage (8 and 4 mm
  levels) and an affine one (8, 4, 2 mm), Mattes mutual information on randomly sampled template
  voxels, regular-step gradient descent (settings: :data:`REGISTRATION`). The T1 is
  resampled onto the template grid and then treated exactly as an fMRIPrep MNI T1 with the MNI152
  brain mask. Affine only: overall position, orientation and size are matched to the template
  (as fMRIPrep's MNI T1 is, nonlinearly), local shape differences remain for the model; the
  affine's scale is not kept. Deterministic: fixed sampling seed,
  one thread per registration (parallelism is across participants, ``n_jobs``), so the same
  input gives the same T1 on any machine. A registration that fails (an ITK error, scale factors
  outside [0.5, 2], a result that leaves part of the MNI brain outside the T1's field of view, or
  one that barely correlates with the template: not a T1w) excludes the participant with reason
  ``registration failed``; the rest of the cohort goes on. About 5-10 s per participant on one core.
- ``"auto"``: the fMRIPrep MNI T1 when present, else ``"register"`` on the raw T1 when present.
- ``"resize"``: the AMAge-Net authors' preprocessing, kept to measure it: the whole native volume
  (no registration, no skull stripping) linearly zoomed to ``t1_shape`` (``scipy.ndimage.zoom``)
  and min-max scaled to [0, 1]. Heads differ in size and position across participants.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np

from amage_core.config import PrepConfig, to_dict
from amage_core.data.fmri import READ_ERRORS, require_regular_file
from amage_core.data.qc import (EMPTY_IMAGE, MISMATCHED_GRID, MISSING_MODALITY, REGISTRATION_FAILED,
                                UNREADABLE_NIFTI, WRONG_DIM, WRONG_SPACE, QCError)

# nibabel affines map voxels to RAS+ millimetres, ITK's physical space is LPS+: x and y flip.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Registration:
    """Settings of the raw T1 -> MNI152 affine registration (``t1_source="register"``).

    Not a profile section: one tested method, identical for every cohort; its settings enter a
    prepared cohort's identity (:func:`registration_identity`), so changing them re-prepares.
    """

    resolution: int = 2                              # mm, MNI152 template (fixed image) grid
    iterations: int = 100                            # optimiser iterations per level and stage (max)
    shrink: tuple[int, ...] = (4, 2, 1)              # resolution levels (template voxels per sample)
    smoothing_mm: tuple[float, ...] = (4.0, 2.0, 0.0)  # Gaussian sigma per level, millimetres
    rigid_levels: int = 2                            # the rigid stage stops before the finest level(s)
    bins: int = 32                                   # Mattes mutual information histogram bins
    sampling: tuple[float, ...] = (0.25, 0.1, 0.05)  # fraction of (shrunk) template voxels sampled, per level
    seed: int = 1                                    # metric sampling seed (0 would be the wall clock)
    learning_rate: float = 2.0                       # mm: largest first step (physical-shift scales)
    min_step: float = 1e-3
    scale_range: tuple[float, float] = (0.5, 2.0)    # plausible affine scale factors
    min_coverage: float = 0.9                        # MNI brain voxels inside the T1's field of view
    min_correlation: float = 0.3                     # with the template inside its brain mask (not a T1w?)

    def __post_init__(self):
        if not len(self.shrink) == len(self.smoothing_mm) == len(self.sampling):
            raise ValueError("Registration: shrink, smoothing_mm and sampling need one value per level")
        if self.seed == 0:      # SimpleITK's sitkWallClock
            raise ValueError("Registration.seed 0 means 'seed from the clock' to ITK: not reproducible")


REGISTRATION = Registration()


@dataclass(frozen=True)
class SpaceCheck:
    """Settings of the check that an MNI-space T1 (fMRIPrep's) is in MNI space and a T1w (:func:`check_mni_space`).

    The T1 and its brain mask are compared with nilearn's MNI152 template on the template's grid
    at ``resolution`` mm (coarse: a few milliseconds a participant). Measured at 6 mm: the 440
    synthetic T1s of the demo cohorts (ages 18-95, two scanner presets) Dice 0.88-1.00, r 0.52-0.93;
    synthetic T1s at 1-2 mm r 0.67-0.88; the same T1s with the voxel size halved Dice 0.07-0.10,
    shifted 40 mm Dice 0.54-0.64 and r 0.01-0.20, contrast inverted r -0.93 to -0.14. Thresholds
    between the two: a T1 shifted by 15 mm or more (r <= 0.36) or scaled by 20 % (Dice <= 0.75)
    fails. Not a profile section, as :class:`Registration`; enters a prepared cohort's identity
    (:func:`space_check_identity`).
    """

    resolution: int = 6             # mm, MNI152 template grid both are compared on
    min_dice: float = 0.8           # brain mask vs the MNI152 brain mask (overlap)
    min_correlation: float = 0.4    # T1 vs the MNI152 template inside its brain mask (Pearson)


SPACE_CHECK = SpaceCheck()


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

    require_regular_file(path, participant, UNREADABLE_NIFTI)     # a FIFO would block the read
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

    img = _load(t1_path, participant)
    mask_img = _load(mask_path, participant) if mask_path is not None else load_mni152_brain_mask(resolution=2)
    if mask_path is not None and (mask_img.shape != img.shape
                                  or not np.allclose(mask_img.affine, img.affine, atol=1e-2)):
        raise QCError(participant, mask_path, f"{MISMATCHED_GRID}: the brain mask's grid (shape "
                                              f"{mask_img.shape}) is not the T1's ({img.shape}, {t1_path}): "
                                              "the mask would not cover the brain")
    out = _on_grid(img, mask_img, cfg, participant, t1_path, mask_path)
    check_mni_space(img, mask_img, participant, t1_path, mask_path)
    return out


def check_mni_space(img, mask_img, participant: str, t1_path, mask_path,
                    settings: SpaceCheck | None = None) -> tuple[float, float]:
    """Check that an MNI-space T1 and its brain mask are where the MNI152 template is; ``(dice, r)``.

    ``img`` and ``mask_img`` are nibabel 3D images (any grid). Both are resampled onto nilearn's
    MNI152 template grid at ``settings.resolution`` mm (mask nearest, T1 linear). Raises
    :class:`QCError` (``wrong space``) naming the participant, the file and the measured value
    against its threshold when the mask overlaps the template's brain mask by a Dice below
    ``min_dice`` (the mask's file) or the T1 correlates with the template inside its brain mask
    below ``min_correlation`` (the T1's file).
    """
    from nilearn.image import resample_img

    settings = settings or SPACE_CHECK
    template, brain = _template(settings.resolution)
    kw = dict(target_affine=template.affine, target_shape=template.shape, force_resample=True, copy_header=True)
    inside = np.asarray(brain.dataobj) > 0
    mask = np.asarray(resample_img(mask_img, interpolation="nearest", **kw).dataobj) > 0.5
    dice = float(2 * np.count_nonzero(mask & inside) / (np.count_nonzero(mask) + np.count_nonzero(inside)))
    if not dice >= settings.min_dice:
        volume = np.count_nonzero(mask) / np.count_nonzero(inside)
        raise QCError(participant, mask_path or t1_path,
                      f"{WRONG_SPACE}: T1 not in MNI space? its brain mask overlaps the MNI152 brain mask "
                      f"by Dice {dice:.2f} (at least {settings.min_dice:g} expected; its volume is "
                      f"{volume:.2f} x the template's)")
    t1 = resample_img(img, interpolation="linear", fill_value=np.nan, **kw)
    r = template_correlation(np.asarray(t1.dataobj, dtype=np.float32), settings.resolution)
    if not r >= settings.min_correlation:
        raise QCError(participant, t1_path,
                      f"{WRONG_SPACE}: T1 not in MNI space, or not a T1w? it correlates r={r:.2f} with the "
                      f"MNI152 template inside its brain mask (at least {settings.min_correlation:g} "
                      "expected; a shifted T1 gives r near 0, inverted T2w-like contrast r < 0)")
    return dice, r


def space_check_identity() -> dict:
    """What decides which MNI-space T1s are kept (template and settings), for a cohort's identity."""
    return {"template": "nilearn MNI152", **to_dict(SPACE_CHECK)}


def _on_grid(img, mask_img, cfg: PrepConfig, participant: str, t1_path, mask_path) -> np.ndarray:
    """An MNI-space T1 and its brain mask -> (D, H, W) masked, normalised T1 on the shared grid."""
    from nilearn.image import resample_img

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


# ------------------------------------------------------------------ registration (SimpleITK)
def to_sitk(img):
    """nibabel image (array x, y, z; RAS+ affine) -> SimpleITK image (array z, y, x; LPS+ space).

    Voxel ``(i, j, k)`` keeps its value and its physical point: ITK's
    ``TransformIndexToPhysicalPoint((i, j, k))`` equals ``RAS_TO_LPS @ img.affine @ (i, j, k, 1)``.
    The direction matrix is the affine's columns divided by their lengths (the spacing), so an
    oblique or flipped scan keeps its orientation.
    """
    import SimpleITK as sitk

    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D image, got shape {data.shape}")
    lps = RAS_TO_LPS @ np.asarray(img.affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    out.SetSpacing(spacing.tolist())
    out.SetOrigin(lps[:3, 3].tolist())
    out.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return out


def from_sitk(image):
    """SimpleITK image -> nibabel image with the same voxels and physical points (inverse of :func:`to_sitk`)."""
    import nibabel as nib
    import SimpleITK as sitk

    lps = np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=float)
    lps[:3, 3] = image.GetOrigin()
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    return nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.float32), RAS_TO_LPS @ lps)


@functools.lru_cache(maxsize=4)
def _template(resolution: int):
    """(T1 template, brain mask) of nilearn's MNI152 at ``resolution`` mm (shipped, no download)."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    return load_mni152_template(resolution=resolution), load_mni152_brain_mask(resolution=resolution)


def template_correlation(data: np.ndarray, resolution: int) -> float:
    """Pearson r of ``data`` with the MNI152 template inside the template's brain mask.

    ``data`` (X, Y, Z) lies on the template grid at ``resolution`` mm (:func:`_template`); NaN
    voxels (outside the image's field of view) are left out, so a field of view that ends inside
    the brain does not compare a fill value with the template. NaN when ``data`` is constant there.
    Used by both paths: a registered raw T1 and an fMRIPrep MNI T1.
    """
    template, brain = _template(resolution)
    data = np.asarray(data)
    inside = (np.asarray(brain.dataobj) > 0) & np.isfinite(data)
    values, reference = data[inside], np.asarray(template.dataobj, dtype=np.float32)[inside]
    return float(np.corrcoef(values, reference)[0, 1]) if values.size > 1 and values.std() > 0 else float("nan")


def _coarsen(image, resolution: float):
    """``image`` smoothed (anti-aliasing) and resampled to voxels of at least ``resolution`` mm.

    Same orientation and field of view. Registration then works on about as many voxels as the
    template has: a 1 mm T1 would otherwise be smoothed at full size at every level (4x slower).
    """
    import SimpleITK as sitk

    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if spacing.min() >= resolution * 0.99:
        return image
    new_spacing = np.maximum(spacing, resolution)
    sigma = np.sqrt(np.maximum(new_spacing ** 2 - spacing ** 2, 0.0)) / 2.355   # FWHM difference
    smooth = sitk.SmoothingRecursiveGaussian(image, sigma.tolist())
    size = np.maximum(np.ceil(np.asarray(image.GetSize()) * spacing / new_spacing), 1).astype(int)
    return sitk.Resample(smooth, [int(v) for v in size], sitk.Transform(), sitk.sitkLinear,
                         image.GetOrigin(), new_spacing.tolist(), image.GetDirection(), 0.0,
                         sitk.sitkFloat32)


@contextlib.contextmanager
def _one_itk_thread():
    """ITK's global default thread count set to 1 inside the block (restored after).

    The metric's sums are split across threads (by the global default, whatever the registration
    method's own setting), so the result depends on the thread count: with one thread, the same
    input gives the same transform on any machine. Parallelism is across participants instead.
    """
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _register_stage(fixed, moving, transform, settings: Registration, levels: int | None = None):
    """One stage (``transform`` optimised in place) over the first ``levels`` resolution levels
    (all by default); returns the registration method."""
    import SimpleITK as sitk

    levels = len(settings.shrink) if levels is None else levels
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(1)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    # gradients at the sampled points only, not of both whole images at every level: faster, as accurate
    reg.MetricUseFixedImageGradientFilterOff()
    reg.MetricUseMovingImageGradientFilterOff()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(list(settings.sampling[:levels]), settings.seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.learning_rate, minStep=settings.min_step,
        numberOfIterations=settings.iterations, relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(settings.shrink[:levels]))
    reg.SetSmoothingSigmasPerLevel(list(settings.smoothing_mm[:levels]))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(fixed, moving)
    return reg


def _itk_reason(exc: Exception) -> str:
    """The one informative line of a SimpleITK exception (no build paths, no object addresses)."""
    import re

    text = str(exc)
    found = re.findall(r"(?:ITK ERROR|Description): (?:\w+\(0x[0-9a-fA-F]+\): )?(.+)", text)
    return (found[-1] if found else text.strip().splitlines()[-1] if text.strip() else type(exc).__name__)[:300]


def register_affine(img, participant: str, path, settings: Registration | None = None):
    """Affine registration of a native-space T1 to the MNI152 template.

    ``img`` is a nibabel 3D image (any orientation). Returns ``(mni, matrix)``: the T1 resampled
    (linear) onto the template grid as a nibabel image, and the 4x4 RAS affine that maps a
    template (MNI) point to the T1's point. A failure is a :class:`QCError` (``registration
    failed``) naming the participant and ``path``.
    """
    import SimpleITK as sitk

    settings = settings or REGISTRATION
    template, brain = _template(settings.resolution)
    fixed, moving = to_sitk(template), to_sitk(img)

    def fail(why: str):
        return QCError(participant, path, f"{REGISTRATION_FAILED}: {why}")

    try:
        with _one_itk_thread():
            working = _coarsen(moving, settings.resolution)
            rigid = sitk.CenteredTransformInitializer(fixed, working, sitk.Euler3DTransform(),
                                                      sitk.CenteredTransformInitializerFilter.MOMENTS)
            _register_stage(fixed, working, rigid, settings, settings.rigid_levels)
            affine = sitk.AffineTransform(3)
            affine.SetCenter(rigid.GetCenter())
            affine.SetMatrix(rigid.GetMatrix())
            affine.SetTranslation(rigid.GetTranslation())
            metric = _register_stage(fixed, working, affine, settings).GetMetricValue()
    except RuntimeError as exc:     # ITK exceptions (e.g. "All samples map outside moving image buffer")
        raise fail(f"SimpleITK: {_itk_reason(exc)}") from exc
    # ITK's transform maps a fixed (LPS) point x to A x + t, with A = matrix and
    # t = translation + center - A center; in RAS: F A F, F t (F = diag(-1, -1, 1)).
    a = np.asarray(affine.GetMatrix(), dtype=float).reshape(3, 3)
    c, t = np.asarray(affine.GetCenter()), np.asarray(affine.GetTranslation())
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = a, t + c - a @ c
    matrix = RAS_TO_LPS @ lps @ RAS_TO_LPS
    if not (np.isfinite(matrix).all() and np.isfinite(metric)):
        raise fail(f"non-finite transform or metric ({metric})")
    scales = np.linalg.svd(a, compute_uv=False)
    lo, hi = settings.scale_range
    if scales.min() < lo or scales.max() > hi:
        raise fail(f"affine scale factors {np.round(scales, 3).tolist()} outside [{lo:g}, {hi:g}]")
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    field = sitk.Resample(ones, fixed, affine, sitk.sitkNearestNeighbor, 0)
    inside = np.asarray(brain.dataobj) > 0
    coverage = float(sitk.GetArrayFromImage(field).transpose(2, 1, 0)[inside].mean())
    if coverage < settings.min_coverage:
        raise fail(f"only {coverage:.0%} of the MNI152 brain mask lies inside the T1's field of view "
                   f"after registration (at least {settings.min_coverage:.0%} expected)")
    mni = from_sitk(sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    r = template_correlation(np.asarray(mni.dataobj), settings.resolution)
    if not r >= settings.min_correlation:
        raise fail(f"the registered T1 correlates r={r:.2f} with the MNI152 template inside its brain "
                   f"mask (at least {settings.min_correlation:g} expected): not a T1w, or misregistered")
    return mni, matrix


def registered_t1(t1_path, cfg: PrepConfig, participant: str,
                  settings: Registration | None = None) -> np.ndarray:
    """(D, H, W) float32 T1 of a raw (native-space) T1w: registered to MNI152, then as :func:`mni_t1`."""
    settings = settings or REGISTRATION
    img = _load(t1_path, participant)
    mni, _ = register_affine(img, participant, t1_path, settings)
    return _on_grid(mni, _template(settings.resolution)[1], cfg, participant, t1_path, None)


def registers(record, cfg: PrepConfig) -> bool:
    """Whether ``record``'s T1 is prepared by registration under ``cfg.t1_source``."""
    return record.t1_raw is not None and (cfg.t1_source == "register"
                                          or (cfg.t1_source == "auto" and record.t1_mni is None))


def registration_identity() -> dict:
    """What makes a registered T1 what it is (library version and settings), for a cohort's identity."""
    import SimpleITK as sitk

    return {"library": f"SimpleITK {sitk.Version.VersionString()}", "template": "nilearn MNI152",
            **to_dict(REGISTRATION)}


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
    if cfg.t1_source == "resize":
        path = record.t1_raw or record.t1_mni
        if path is None:
            raise QCError(pid, None, f"{MISSING_MODALITY}: T1 (no raw T1w and no fMRIPrep T1w)")
        return resized_t1(path, tuple(cfg.t1_shape), pid)
    if registers(record, cfg):
        return registered_t1(record.t1_raw, cfg, pid)
    if cfg.t1_source == "register":
        raise QCError(pid, None, f"{MISSING_MODALITY}: raw T1w (t1_source='register' registers the "
                                 "native-space T1w to MNI152; none found)")
    if record.t1_mni is None:
        hint = (f"; raw T1 at {record.t1_raw}: set t1_source='auto' or 'register' to register it to "
                "MNI152, or 'resize'" if record.t1_raw is not None else "; and no raw T1w")
        raise QCError(pid, record.t1_raw, f"{MISSING_MODALITY}: T1 in MNI space (no fMRIPrep "
                                          f"space-MNI152NLin2009cAsym_desc-preproc_T1w{hint})")
    return mni_t1(record.t1_mni, record.brain_mask, cfg, pid)
