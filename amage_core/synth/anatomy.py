"""Structural ageing on the MNI152 2009 templates shipped with nilearn.

Each participant's T1w is built from the template tissue maps (grey matter, white matter, CSF =
brain mask minus both) in MNI152NLin2009cAsym space, as fMRIPrep writes a T1w resampled to MNI:

1. **Regional grey-matter loss that accelerates in late life.** The GM fraction of every voxel
   shrinks by ``loss = r_lin(x) (a - 20)/10 + r_quad(x) max(0, (a - 55)/10)^2`` where ``a`` is the
   participant's structural age; lost GM becomes CSF. ``r_lin`` is a small global rate plus
   Gaussian "hotspots": lateral prefrontal and orbitofrontal cortex, insula, anterior cingulate,
   lateral temporal cortex and the hippocampus, with the hippocampus accelerating most; primary
   visual cortex is relatively spared (Raz et al. 2005, Cereb Cortex 15:1676; Fjell & Walhovd
   2010, Rev Neurosci 21:187; Good et al. 2001, NeuroImage 14:21). Rates run from 1.8% per decade
   (global) to about 6% per decade in the hotspots, below the longitudinal rates of Raz et al.
   (2005), as cross-sectional rates are. :data:`HOTSPOTS` lists them and ``regions_truth.tsv``
   gives the rate at every atlas region.
2. **White-matter loss after mid-life** (Raz et al. 2005; Fjell & Walhovd 2010) and **declining
   GM/WM contrast** (Salat et al. 2009, NeuroImage 48:21): WM intensity falls 1% per decade.
3. **Ventricular and CSF expansion**: a displacement field pointing away from the lateral
   ventricles pushes their border outward by a few mm by old age (ventricles roughly triple in
   volume across adulthood, Fjell & Walhovd 2010); sulcal CSF grows as GM is lost (step 1).
4. **Sex.** Head size is larger in males (linear scale +/-1.8%, about 11% in volume; Ruigrok et al.
   2014, Neurosci Biobehav Rev 39:34), with regional GM differences beyond size (up to 8% of the
   GM fraction, removed from the smaller sex): males larger amygdala/hippocampus, females larger
   inferior/middle frontal cortex (Ruigrok et al. 2014). The *trajectory* differs too: lateral
   prefrontal, orbitofrontal and lateral temporal GM declines 25% faster in males (Cowell et al.
   1994, J Neurosci 14:4748; Coffey et al. 1998, Arch Neurol 55:169).
5. **Per-person variation unrelated to age**: a smooth random deformation (a few mm, what
   nonlinear registration leaves), head size, and a smooth random multiplicative field on the GM
   fraction (individual differences in cortical thickness/folding).
6. **Scanner**: a smooth multiplicative bias field, a global gain and Rician noise, with the
   preset's tissue contrast (:mod:`amage_core.synth.presets`).

Arrays follow nibabel's (X, Y, Z) voxel order on the template grid at the configured voxel size.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from amage_core.synth.presets import Preset


@dataclass(frozen=True)
class Hotspot:
    """A Gaussian blob of extra GM loss (fraction of GM lost per decade), bilateral by default."""

    name: str
    centre: tuple[float, float, float]   # MNI mm (left-hemisphere x is mirrored when bilateral)
    sigma: float                         # mm
    linear: float                        # extra loss per decade from age 20
    quadratic: float                     # extra loss per decade^2 after age 55
    male_ratio: float = 1.0              # males' rate / females' rate inside the blob
    bilateral: bool = True


BASE_LINEAR = 0.018       # global GM loss per decade (fraction), everywhere
BASE_QUADRATIC = 0.002    # global late-life acceleration per decade^2 after 55
ONSET_LINEAR = 20.0
ONSET_QUADRATIC = 55.0

HOTSPOTS: tuple[Hotspot, ...] = (
    Hotspot("lateral prefrontal", (40, 35, 25), 16, 0.045, 0.005, male_ratio=1.25),
    Hotspot("orbitofrontal", (22, 38, -15), 12, 0.033, 0.004, male_ratio=1.25),
    Hotspot("insula", (38, 5, 2), 10, 0.033, 0.003),
    Hotspot("anterior cingulate", (0, 28, 22), 12, 0.030, 0.003, bilateral=False),
    Hotspot("lateral temporal", (56, -18, -8), 13, 0.027, 0.004, male_ratio=1.25),
    Hotspot("hippocampus", (27, -22, -13), 9, 0.030, 0.015),
)
# Primary visual cortex: relatively spared (negative extra loss, floor at 0 total).
SPARED: tuple[Hotspot, ...] = (Hotspot("calcarine", (0, -88, 4), 12, -0.015, -0.0015, bilateral=False),)

# Regional GM differences between the sexes beyond head size (male minus female, fraction of GM).
SEX_OFFSETS: tuple[tuple[str, tuple[float, float, float], float, float], ...] = (
    ("amygdala/hippocampus (male > female)", (24, -6, -18), 8.0, 0.08),
    ("inferior/middle frontal (female > male)", (44, 30, 18), 10.0, -0.05),
)

HEAD_SCALE_SEX = 0.018       # linear head-size difference (male +, female -)
HEAD_SCALE_SD = 0.015
DEFORM_MM = 0.8              # sd of the smooth random displacement per axis
GM_VARIATION_SD = 0.08       # sd of the log multiplicative GM field (individual anatomy)
WM_LOSS_PER_DECADE = 0.015   # WM fraction lost per decade after 45
WM_CONTRAST_PER_DECADE = 0.01
VENTRICLE_LINEAR_MM = 0.45   # outward shift of the ventricle border per decade from 20
VENTRICLE_QUADRATIC_MM = 0.15  # extra per decade^2 after 55


def gm_loss(age: np.ndarray | float, r_lin: np.ndarray | float, r_quad: np.ndarray | float) -> np.ndarray:
    """Fraction of GM lost at structural age ``age`` for rates ``r_lin``, ``r_quad`` (broadcast)."""
    age = np.asarray(age, dtype=float)
    late = np.maximum(0.0, (age - ONSET_QUADRATIC) / 10.0)
    return np.clip(r_lin * (age - ONSET_LINEAR) / 10.0 + r_quad * late ** 2, -0.05, 0.85)


def ventricle_shift_mm(age: float) -> float:
    """Outward displacement (mm) of the ventricle border at structural age ``age``."""
    late = max(0.0, (age - ONSET_QUADRATIC) / 10.0)
    return max(0.0, VENTRICLE_LINEAR_MM * (age - ONSET_LINEAR) / 10.0 + VENTRICLE_QUADRATIC_MM * late ** 2)


@dataclass
class AnatomyModel:
    """Template tissue and effect maps on the output grid (every array (X, Y, Z) float32)."""

    voxel_size: float
    affine: np.ndarray          # (4, 4) MNI152NLin2009cAsym voxel -> mm
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray            # template brain mask (0/1)
    rate_linear: np.ndarray     # female GM loss per decade (fraction)
    rate_quadratic: np.ndarray  # female late-life acceleration per decade^2
    male_ratio: np.ndarray      # male rate / female rate
    sex_offset: np.ndarray      # male minus female GM fraction (relative)
    ventricle_field: np.ndarray  # (3, X, Y, Z) outward unit-ish displacement (mm per mm of shift)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.gm.shape)


def load_template(kind: str, voxel_size: float):
    """A nilearn MNI152 2009 template image (``t1``, ``gm``, ``wm``, ``mask``) at ``voxel_size`` mm."""
    from nilearn import datasets, image

    loaders = {
        "t1": datasets.load_mni152_template,
        "gm": datasets.load_mni152_gm_template,
        "wm": datasets.load_mni152_wm_template,
        "mask": datasets.load_mni152_brain_mask,
    }
    if voxel_size <= 0:
        raise ValueError(f"synth: voxel_size must be positive, got {voxel_size}")
    if float(voxel_size).is_integer():
        return loaders[kind](resolution=int(voxel_size))
    ref = loaders[kind](resolution=1)
    shape = np.ceil(np.array(ref.shape) / voxel_size).astype(int)
    affine = ref.affine.copy()
    affine[:3, :3] = np.diag([voxel_size] * 3)
    interp = "nearest" if kind == "mask" else "continuous"
    return image.resample_img(ref, target_affine=affine, target_shape=tuple(shape), interpolation=interp,
                              force_resample=True, copy_header=True)


def world_coords(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """(3, X, Y, Z) MNI coordinates (mm) of every voxel centre."""
    ijk = np.indices(shape, dtype=np.float32)
    return np.einsum("ab,b...->a...", affine[:3, :3].astype(np.float32), ijk) + affine[:3, 3, None, None, None]


def _blob_sum(xyz: np.ndarray, blobs, value) -> np.ndarray:
    out = np.zeros(xyz.shape[1:], dtype=np.float32)
    for b in blobs:
        centres = [np.array(b.centre, float)]
        if getattr(b, "bilateral", True) and b.centre[0] != 0:
            centres.append(np.array([-b.centre[0], b.centre[1], b.centre[2]]))
        for c in centres:
            d2 = sum((xyz[i] - c[i]) ** 2 for i in range(3))
            out += value(b) * np.exp(-0.5 * d2 / b.sigma ** 2)
    return out


@functools.lru_cache(maxsize=4)
def build_anatomy_model(voxel_size: float) -> AnatomyModel:
    """Load the templates at ``voxel_size`` and lay the effect maps over them (cached)."""
    gm_img = load_template("gm", voxel_size)
    affine = gm_img.affine.copy()
    gm = gm_img.get_fdata(dtype=np.float32)
    wm = load_template("wm", voxel_size).get_fdata(dtype=np.float32)
    mask = (load_template("mask", voxel_size).get_fdata(dtype=np.float32) > 0.5).astype(np.float32)
    gm, wm = np.clip(gm, 0, 1) * mask, np.clip(wm, 0, 1) * mask
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.clip(mask - gm - wm, 0, 1)
    xyz = world_coords(gm.shape, affine)

    r_lin = BASE_LINEAR + _blob_sum(xyz, HOTSPOTS + SPARED, lambda b: b.linear)
    r_quad = BASE_QUADRATIC + _blob_sum(xyz, HOTSPOTS + SPARED, lambda b: b.quadratic)
    # male/female ratio: a weighted blend of the hotspots' ratios (1 outside them)
    weight = _blob_sum(xyz, HOTSPOTS, lambda b: 1.0)
    male_extra = _blob_sum(xyz, HOTSPOTS, lambda b: b.male_ratio - 1.0)
    male_ratio = 1.0 + male_extra / np.maximum(weight, 1.0)
    sex_offset = np.zeros_like(gm)
    for _, centre, sigma, value in SEX_OFFSETS:
        d2 = sum((xyz[i] - centre[i]) ** 2 for i in range(3))
        sex_offset += value * np.exp(-0.5 * d2 / sigma ** 2)
        mirrored = sum((xyz[i] - c) ** 2 for i, c in enumerate((-centre[0], centre[1], centre[2])))
        sex_offset += value * np.exp(-0.5 * mirrored / sigma ** 2)

    ventricle_field = _ventricle_field(csf, xyz, voxel_size)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return AnatomyModel(
        voxel_size=float(voxel_size), affine=affine, gm=f32(gm), wm=f32(wm), csf=f32(csf), mask=f32(mask),
        rate_linear=f32(np.maximum(r_lin, 0.0)), rate_quadratic=f32(np.maximum(r_quad, 0.0)),
        male_ratio=f32(male_ratio), sex_offset=f32(sex_offset), ventricle_field=f32(ventricle_field),
    )


def _ventricle_field(csf: np.ndarray, xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """(3, X, Y, Z) field along the gradient of the smoothed ventricle map, max norm 1.

    Sampling the template at ``x + s * field(x)`` draws ventricle content outward, so the lateral
    ventricles grow by about ``s`` mm.
    """
    central = (np.abs(xyz[0]) < 25) & (xyz[1] > -45) & (xyz[1] < 30) & (xyz[2] > -5) & (xyz[2] < 35)
    vent = (csf > 0.5) & central
    smooth = ndimage.gaussian_filter(vent.astype(np.float32), sigma=8.0 / voxel_size)
    grad = np.stack(np.gradient(smooth))
    norm = np.sqrt((grad ** 2).sum(axis=0)).max()
    return grad / norm if norm > 0 else grad


def smooth_field(shape: tuple[int, int, int], rng: np.random.Generator, order: int) -> np.ndarray:
    """(X, Y, Z) smooth random field with unit sd: a random low-order 3D cosine series.

    ``order`` cosines per axis; coefficients fall off as 1/(1 + k) so lower frequencies dominate.
    """
    coef = rng.standard_normal((order, order, order))
    k = np.arange(order)
    coef /= (1 + k[:, None, None] + k[None, :, None] + k[None, None, :])
    coef[0, 0, 0] = 0.0
    bases = [np.cos(np.pi * np.outer(np.arange(n) + 0.5, k) / n) for n in shape]
    field = np.einsum("ia,jb,kc,abc->ijk", bases[0], bases[1], bases[2], coef, optimize=True)
    return (field / (field.std() + 1e-12)).astype(np.float32)


@dataclass
class AnatomyPerson:
    """What the T1 of one participant depends on."""

    smri_age: float
    sex: str                    # "M" or "F"
    head_scale: float


def sample_person(smri_age: float, sex: str, rng: np.random.Generator) -> AnatomyPerson:
    sign = 1.0 if sex == "M" else -1.0
    return AnatomyPerson(float(smri_age), sex, float(1.0 + sign * HEAD_SCALE_SEX + rng.normal(0, HEAD_SCALE_SD)))


def aged_tissue(model: AnatomyModel, person: AnatomyPerson,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One participant's tissue fractions after ageing, sex and individual variation, in MNI space.

    Returns (gm, wm, csf, mask), each (X, Y, Z); gm/wm/csf float32 in [0, 1], mask bool.
    """
    shape = model.shape
    male = person.sex == "M"
    ratio = model.male_ratio if male else 1.0
    loss = gm_loss(person.smri_age, model.rate_linear * ratio, model.rate_quadratic * ratio)
    # the smaller sex has less GM (removing GM works where the template's GM fraction is near 1)
    sex_gain = 1.0 - np.maximum(-model.sex_offset if male else model.sex_offset, 0.0)
    variation = np.exp(GM_VARIATION_SD * smooth_field(shape, rng, order=8))
    gm0 = np.clip(model.gm * sex_gain * variation, 0.0, 1.0)
    gm = gm0 * (1.0 - loss)
    wm_loss = WM_LOSS_PER_DECADE * max(0.0, (person.smri_age - 45.0) / 10.0)
    wm = model.wm * (1.0 - wm_loss)
    csf = np.clip(model.mask - gm - wm, 0.0, 1.0)

    # geometry: head size, random deformation, ventricle expansion (sampling positions in template)
    xyz = world_coords(shape, model.affine)
    centre = np.array([0.0, -18.0, 8.0], dtype=np.float32)[:, None, None, None]
    src = centre + (xyz - centre) / person.head_scale
    for axis in range(3):
        src[axis] += DEFORM_MM * smooth_field(shape, rng, order=4)
    src += ventricle_shift_mm(person.smri_age) * model.ventricle_field
    inv = np.linalg.inv(model.affine)
    vox = np.einsum("ab,b...->a...", inv[:3, :3].astype(np.float32), src) + inv[:3, 3, None, None, None]

    def warp(a: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(a, vox, order=1, mode="constant", cval=0.0, prefilter=False)

    return warp(gm), warp(wm), warp(csf), warp(model.mask) > 0.5


def synthesize_t1(model: AnatomyModel, preset: Preset, person: AnatomyPerson,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One participant's T1w and brain mask on the model grid.

    Returns (t1 (X, Y, Z) int16, mask (X, Y, Z) uint8).
    """
    shape = model.shape
    gm, wm, csf, mask = aged_tissue(model, person, rng)
    i_wm = preset.t1_wm * (1.0 - WM_CONTRAST_PER_DECADE * (person.smri_age - 20.0) / 10.0)
    t1 = gm * preset.t1_gm + wm * i_wm + csf * preset.t1_csf
    bias = np.exp(preset.t1_bias * smooth_field(shape, rng, order=3))
    gain = np.exp(rng.normal(0.0, preset.t1_gain_sd))
    t1 = t1 * bias * gain
    head = ndimage.binary_dilation(mask, iterations=1)
    sd = preset.t1_noise * preset.t1_wm
    noisy = np.sqrt((t1 + sd * rng.standard_normal(shape, dtype=np.float32)) ** 2
                    + (sd * rng.standard_normal(shape, dtype=np.float32)) ** 2)
    t1 = np.where(head, noisy, 0.0)
    return np.clip(np.round(t1), 0, 32767).astype(np.int16), mask.astype(np.uint8)
