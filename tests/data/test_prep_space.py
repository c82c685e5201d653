"""An MNI-space T1 (fMRIPrep's) is checked against the MNI152 template (issue 19, point 4).

The good T1 is one of the synthetic generator's (:mod:`amage_core.synth.anatomy`, 4 mm): the
noisier ``oasis3-like`` scanner, age 85, a small head: the hardest realistic case it makes. The bad
ones are the issue's: the header's voxel size halved, the image shifted 40 mm, the contrast inverted
(T2w-like). Measured on this T1 (6 mm check): good Dice 0.95, r 0.70; shifted 2-3 mm r >= 0.57;
shifted 20-25 mm Dice <= 0.80, r <= 0.27; scaled by 0.8 or 1.25 Dice <= 0.71.
"""
from __future__ import annotations

import inspect
import json
import logging
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prep_fixtures as fx
from amage_core.data import smri
from amage_core.data.qc import WRONG_SPACE, QCError, category
from amage_core.data.sources.base import ParticipantRecord
from amage_core.io import stable_hash

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good():
    """(T1, brain mask) nibabel images of a synthetic MNI-space participant at 4 mm."""
    from amage_core.synth import anatomy, presets

    model = anatomy.build_anatomy_model(4.0)
    person = anatomy.AnatomyPerson(smri_age=85.0, sex="F", head_scale=0.97)
    t1, mask = anatomy.synthesize_t1(model, presets.PRESETS["oasis3-like"], person, np.random.default_rng(0))
    return (nib.Nifti1Image(t1.astype(np.float32), model.affine),
            nib.Nifti1Image(mask.astype(np.uint8), model.affine))


def _moved(img, matrix: np.ndarray):
    """The same voxels with the header's affine composed with ``matrix`` (a world-space move)."""
    return nib.Nifti1Image(np.asarray(img.dataobj), matrix @ img.affine)


def _shift(mm) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = mm
    return m


def _inverted(t1, mask):
    data, inside = np.asarray(t1.dataobj, dtype=np.float32), np.asarray(mask.dataobj) > 0
    return nib.Nifti1Image(np.where(inside, data[inside].max() - data, data).astype(np.float32), t1.affine)


def _bad(kind: str, t1, mask):
    if kind == "voxel size halved":
        half = t1.affine.copy()
        half[:3, :3] /= 2
        return nib.Nifti1Image(np.asarray(t1.dataobj), half), nib.Nifti1Image(np.asarray(mask.dataobj), half)
    if kind.startswith("shifted 40 mm"):
        return _moved(t1, _shift([40.0, 0, 0])), _moved(mask, _shift([40.0, 0, 0]))
    return _inverted(t1, mask), mask


DICE = r"brain mask overlaps the MNI152 brain mask by Dice 0\.\d\d \(at least 0\.8 expected"


def _check(t1, mask):
    return smri.check_mni_space(t1, mask, "sub-X", "t1.nii.gz", "mask.nii.gz")


@pytest.mark.parametrize("kind, measure, blamed", [
    pytest.param(kind, measure, blamed, id=kind) for kind, measure, blamed in [
        ("voxel size halved", DICE, "mask"), ("shifted 40 mm", DICE, "mask"),
        ("shifted 40 mm, no brain mask", r"correlates r=-?0\.\d\d with the MNI152 template .*at least 0\.4", "t1"),
        ("inverted contrast", r"correlates r=-0\.\d\d with the MNI152 template .*at least 0\.4", "t1")]
])
def test_the_issues_wrong_space_t1s_are_excluded_and_the_good_one_kept(tmp_path, good, kind, measure, blamed):
    """Before: all four prepared like the good one (the only check: the mask covers 10 voxels)."""
    cfg = fx.cfg()
    t1, mask = tmp_path / "sub-X_T1w.nii.gz", tmp_path / "sub-X_mask.nii.gz"
    nib.save(good[0], t1)
    nib.save(good[1], mask)
    out = smri.participant_t1(ParticipantRecord("sub-X", 85.0, "F", "c", t1_mni=t1, brain_mask=mask), cfg)
    assert out.shape == tuple(cfg.t1_shape) and np.isfinite(out).all() and out.max() == 1

    bad_t1, bad_mask = _bad(kind, *good)
    nib.save(bad_t1, t1)
    nib.save(bad_mask, mask)
    record = ParticipantRecord("sub-X", 85.0, "F", "c", t1_mni=t1, brain_mask=None if "no brain mask" in kind else mask)
    with pytest.raises(QCError) as exc:
        smri.participant_t1(record, cfg)
    assert category(exc.value.reason) == WRONG_SPACE, str(exc.value)
    assert exc.value.reason.startswith("wrong space: T1 not in MNI space")
    assert exc.value.participant == "sub-X" and exc.value.file == str(t1 if blamed == "t1" else mask)
    assert str(exc.value.file) in str(exc.value) and "\n" not in exc.value.reason
    assert re.search(measure, exc.value.reason), exc.value.reason


@SETTINGS
@given(direction=st.tuples(*[st.floats(-1, 1)] * 3).filter(lambda v: np.linalg.norm(v) > 0.1),
       distance=st.floats(25.0, 80.0), with_mask=st.booleans())
def test_a_t1_shifted_25_mm_or_more_is_excluded(good, direction, distance, with_mask):
    move = _shift(distance * np.asarray(direction) / np.linalg.norm(direction))
    t1 = _moved(good[0], move)
    mask = _moved(good[1], move) if with_mask else smri._template(2)[1]     # no mask: the MNI152 one
    with pytest.raises(QCError, match=WRONG_SPACE):
        _check(t1, mask)


@SETTINGS
@given(scale=st.one_of(st.floats(0.3, 0.8), st.floats(1.25, 3.0)), about=st.sampled_from(["voxel size", "MNI origin"]))
def test_a_t1_with_a_wrong_voxel_size_or_scale_is_excluded(good, scale, about):
    if about == "voxel size":                 # the header's voxel size wrong: scaled about the first voxel
        t1, mask = (nib.Nifti1Image(np.asarray(img.dataobj), img.affine @ np.diag([scale] * 3 + [1.0])) for img in good)
    else:
        t1, mask = (_moved(img, np.diag([scale] * 3 + [1.0])) for img in good)
    with pytest.raises(QCError, match=r"wrong space: .* Dice"):
        _check(t1, mask)


@SETTINGS
@given(gain=st.floats(1e-3, 1e3), offset=st.floats(0.0, 1e3), with_mask=st.booleans())
def test_inverted_contrast_is_excluded_in_any_intensity_unit(good, gain, offset, with_mask):
    inv = _inverted(*good)
    t1 = nib.Nifti1Image(np.asarray(inv.dataobj) * np.float32(gain) + np.float32(offset), inv.affine)
    with pytest.raises(QCError, match=r"wrong space: .* r=-0\.\d\d"):
        _check(t1, good[1] if with_mask else smri._template(2)[1])


@SETTINGS
@given(shift=st.tuples(*[st.floats(-1.5, 1.5)] * 3), scale=st.floats(0.97, 1.04),
       gain=st.floats(1e-3, 1e3), offset=st.floats(0.0, 1e3), flip=st.booleans(),
       voxel=st.sampled_from([None, 3.0, 5.0, 8.0]))
def test_a_good_t1_is_kept_whatever_its_grid_orientation_or_unit(good, shift, scale, gain, offset, flip, voxel):
    """Small misalignments (<= 2.6 mm, 3-4 % size), another grid, a flipped axis, any intensity unit."""
    from nilearn.image import resample_img

    move = _shift(shift) @ np.diag([scale] * 3 + [1.0])
    t1, mask = _moved(good[0], move), _moved(good[1], move)
    if flip:                                  # stored right-to-left, as many scanners write: same world
        flipped = np.diag([-1.0, 1, 1, 1])
        flipped[0, 3] = t1.shape[0] - 1
        t1, mask = (nib.Nifti1Image(np.asarray(img.dataobj)[::-1], img.affine @ flipped) for img in (t1, mask))
    if voxel is not None:
        target = np.diag([voxel] * 3 + [1.0])
        target[:3, 3] = [-96.0, -132.0, -78.0]
        shape = tuple(int(np.ceil(s / voxel)) for s in (194, 230, 194))
        kw = dict(target_affine=target, target_shape=shape, force_resample=True, copy_header=True)
        t1 = resample_img(t1, interpolation="linear", **kw)
        mask = resample_img(mask, interpolation="nearest", **kw)
    t1 = nib.Nifti1Image(np.asarray(t1.dataobj) * np.float32(gain) + np.float32(offset), t1.affine)
    dice, r = _check(t1, mask)
    assert dice >= smri.SPACE_CHECK.min_dice and r >= smri.SPACE_CHECK.min_correlation


def test_one_correlation_with_the_template_for_both_paths():
    """The registration path and the MNI check share :func:`smri.template_correlation`."""
    template, _ = smri._template(6)
    data = np.asarray(template.dataobj, dtype=np.float32)
    assert smri.template_correlation(3 * data + 7, 6) == pytest.approx(1.0)
    assert smri.template_correlation(-data, 6) == pytest.approx(-1.0)
    assert np.isnan(smri.template_correlation(np.ones_like(data), 6))
    assert "template_correlation(" in inspect.getsource(smri.register_affine)


def _bids(root, shifted: str | None = None):
    subs = ["sub-01", "sub-02", "sub-03"]
    fx.write_bids_root(root, pd.DataFrame({"participant_id": subs, "age": [30, 50, 70], "sex": ["F", "M", "F"]}))
    for i, sub in enumerate(subs):
        t1, mask = fx.fmriprep_anat(root / "derivatives", sub, seed=i)
        if sub == shifted:
            for path in (t1, mask):
                img = nib.load(path)
                nib.save(_moved(img, _shift([0, 40.0, 0])), path)
    fx.derivative_descriptions(root / "derivatives", ("fmriprep",))
    return root


def test_prepare_excludes_a_wrong_space_t1_and_reprepares_a_cohort_made_before_the_check(tmp_path, caplog):
    from amage_core.data.prepare import prepare_cohort

    root = _bids(tmp_path / "ds", shifted="sub-02")
    cfg = fx.cfg(modalities=["smri"])
    out = tmp_path / "out"
    cohort = prepare_cohort("bids", root, out, cfg, progress=False)
    assert cohort.participants["participant_id"].tolist() == ["sub-01", "sub-03"]
    qc = cohort.qc.set_index("participant_id")
    assert qc.loc["sub-02", "reason"].startswith("wrong space: T1 not in MNI space? its brain mask overlaps")
    assert qc.loc["sub-02", "file"].endswith("sub-02_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz")
    assert cohort.manifest["prep_key"]["t1_space_check"] == {"template": "nilearn MNI152",
                                                            "resolution": 6, "min_dice": 0.8, "min_correlation": 0.4}

    # a cohort prepared before the check existed (no t1_space_check in its identity) is prepared
    # again, not refused as "another configuration"
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["prep_key"]["t1_space_check"]
    manifest["config_hash"] = stable_hash(manifest["prep_key"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.INFO, logger="amage_core.data.prepare"):
        again = prepare_cohort("bids", root, out, cfg, progress=True)
    assert "prepared by another version of the T1 checks (t1_space_check); preparing it again" in caplog.text
    assert again.participants["participant_id"].tolist() == ["sub-01", "sub-03"]
    assert "t1_space_check" in again.manifest["prep_key"]
    # a change of the user's settings is still refused
    with pytest.raises(ValueError, match="another configuration"):
        prepare_cohort("bids", root, out, fx.cfg(modalities=["smri"], min_age=10.0), progress=False)
