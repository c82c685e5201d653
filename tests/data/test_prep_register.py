"""t1_source='register': a raw (native-space) T1 -> MNI152 by SimpleITK affine registration.

The "raw" T1 is nilearn's MNI152 template at 4 mm, stored left-right flipped (LAS, as many
scanners write) in arbitrary units, and moved by a known affine (rotation ~8 deg, translation
~10 mm, scale 1.1): registration must find that affine again.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.affines import apply_affine
from scipy.spatial.transform import Rotation

import prep_fixtures as fx
from amage_core.data import smri
from amage_core.data.qc import QCError
from amage_core.data.sources.base import ParticipantRecord

FAST = smri.Registration(resolution=4, iterations=50)      # 4 mm template: ~1 s a registration


def _known_affine() -> np.ndarray:
    """RAS 4x4 taking a template (MNI) point to the raw T1's point."""
    m = np.eye(4)
    m[:3, :3] = 1.1 * Rotation.from_euler("xyz", [8, -5, 6], degrees=True).as_matrix()
    m[:3, 3] = [10.0, -8.0, 6.0]
    return m


def _four_mm_template():
    from nilearn.image import resample_img

    template, _ = smri._template(2)
    four = np.diag([4.0, 4.0, 4.0, 1.0])
    four[:3, 3] = template.affine[:3, 3]
    return resample_img(template, target_affine=four, target_shape=(50, 59, 48),
                        interpolation="continuous", force_resample=True, copy_header=True)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Path of the moved, flipped 4 mm template: a native-space 'T1w'."""
    small = _four_mm_template()
    data = np.asarray(small.dataobj, dtype=np.float32)[::-1] * 1000 + 50
    flip = np.array([[-1.0, 0, 0, data.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    path = tmp_path_factory.mktemp("raw") / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(data, _known_affine() @ small.affine @ flip), path)
    return path


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(smri, "REGISTRATION", FAST)


def test_nibabel_to_simpleitk_keeps_values_and_physical_points():
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [20, -10, 35], degrees=True).as_matrix() @ np.diag([-1.0, 2.0, 3.0])
    affine[:3, 3] = [30.0, -40.0, 12.0]
    data = rng.random((5, 6, 7)).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    image = smri.to_sitk(img)
    assert image.GetSize() == (5, 6, 7)
    for ijk in [(0, 0, 0), (4, 5, 6), (1, 3, 2), (3, 0, 5)]:
        ras = apply_affine(affine, ijk)
        lps = [-ras[0], -ras[1], ras[2]]
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(ijk), lps, atol=1e-9)
        assert image.GetPixel(ijk) == data[ijk]
    back = smri.from_sitk(image)
    np.testing.assert_allclose(back.affine, affine, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)


def test_registration_recovers_a_known_affine(raw):
    template, brain = smri._template(2)
    inside = np.asarray(brain.dataobj) > 0
    img = smri._load(raw, "sub-01")
    mni, matrix = smri.register_affine(img, "sub-01", raw)          # the production settings (2 mm)
    assert mni.shape == template.shape and np.allclose(mni.affine, template.affine)
    points = apply_affine(template.affine, np.argwhere(inside)[::20])
    error = np.linalg.norm(apply_affine(matrix, points) - apply_affine(_known_affine(), points), axis=1)
    assert error.mean() < 1.0 and error.max() < 2.0                 # mm, on 4 mm content

    from nilearn.image import resample_to_img

    kw = dict(interpolation="continuous", force_resample=True, copy_header=True)
    ideal = np.asarray(resample_to_img(_four_mm_template(), template, **kw).dataobj)[inside]
    header_only = np.asarray(resample_to_img(img, template, **kw).dataobj)[inside]   # no registration
    got = np.asarray(mni.dataobj)[inside]
    r = np.corrcoef(got, ideal)[0, 1]
    assert r > 0.9
    assert r > np.corrcoef(header_only, ideal)[0, 1] + 0.3


def test_registration_is_deterministic(raw):
    img = smri._load(raw, "sub-01")
    first, m1 = smri.register_affine(img, "sub-01", raw, FAST)
    second, m2 = smri.register_affine(img, "sub-01", raw, FAST)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(np.asarray(first.dataobj), np.asarray(second.dataobj))
    with pytest.raises(ValueError, match="clock"):
        smri.Registration(seed=0)                          # ITK would seed from the wall clock
    with pytest.raises(ValueError, match="one value per level"):
        smri.Registration(shrink=(2, 1))


def test_auto_registers_a_raw_t1_and_prefers_fmriprep(raw, tmp_path, fast):
    cfg = fx.cfg()
    raw_only = ParticipantRecord("sub-01", 30.0, "F", "t", t1_raw=raw)
    assert smri.registers(raw_only, cfg) and smri.registers(raw_only, fx.cfg(t1_source="register"))
    out = smri.participant_t1(raw_only, cfg)
    assert out.shape == tuple(cfg.t1_shape) and out.dtype == np.float32
    assert out.max() == pytest.approx(1.0) and out.min() == 0.0
    np.testing.assert_array_equal(out, smri.participant_t1(raw_only, fx.cfg(t1_source="register")))

    mask = tmp_path / "mask.nii.gz"
    both = ParticipantRecord("sub-01", 30.0, "F", "t", t1_raw=raw,
                             t1_mni=fx.write_t1(tmp_path / "mni.nii.gz", mask_path=mask), brain_mask=mask)
    assert not smri.registers(both, cfg) and smri.registers(both, fx.cfg(t1_source="register"))
    np.testing.assert_array_equal(smri.participant_t1(both, cfg), smri.mni_t1(both.t1_mni, mask, cfg, "sub-01"))
    with pytest.raises(QCError, match="set t1_source='auto' or 'register'"):
        smri.participant_t1(raw_only, fx.cfg(t1_source="fmriprep"))
    mni_only = ParticipantRecord("sub-01", 30.0, "F", "t", t1_mni=both.t1_mni)
    with pytest.raises(QCError, match="missing modality: raw T1w"):
        smri.participant_t1(mni_only, fx.cfg(t1_source="register"))


def test_a_bad_raw_t1_is_a_qc_error_naming_participant_file_and_reason(tmp_path, fast):
    rng = np.random.default_rng(0)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-90, -120, -70]
    cases = {
        "noise": (rng.random((45, 55, 45)), "registration failed: the registered T1 correlates"),
        "zeros": (np.zeros((45, 55, 45)), "registration failed: SimpleITK: .*Total Mass"),
        "nan": (np.where(rng.random((45, 55, 45)) > 0.99, np.nan, 1.0), "unreadable NIfTI: .*NaN"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / f"{name}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
        with pytest.raises(QCError, match=reason) as err:
            smri.registered_t1(path, fx.cfg(), "sub-07")
        assert err.value.participant == "sub-07" and err.value.file == str(path)
    far = tmp_path / "far_T1w.nii.gz"                     # a brain 5 m away: out of the field of view
    nib.save(nib.Nifti1Image(rng.random((20, 20, 20)).astype(np.float32),
                             np.array([[4.0, 0, 0, 5000], [0, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 1]])), far)
    with pytest.raises(QCError, match="registration failed"):
        smri.registered_t1(far, fx.cfg(), "sub-07")


def test_prepare_registers_raw_t1s_and_records_a_failure(raw, tmp_path, fast):
    from amage_core.data.prepare import prepare_cohort

    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "fixture", "BIDSVersion": "1.8.0"}')
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [30, 40], "sex": ["F", "M"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    for sub in ("sub-01", "sub-02"):
        (root / sub / "anat").mkdir(parents=True)
    (root / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(raw.read_bytes())
    noise = np.random.default_rng(1).random((45, 55, 45)).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, np.diag([4.0, 4.0, 4.0, 1.0])), root / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    cohort = prepare_cohort("bids", root, tmp_path / "out", fx.cfg(modalities=["smri"]), progress=False)
    assert cohort.participants["participant_id"].tolist() == ["sub-01"]
    assert cohort.t1.shape == (1, 12, 14, 12)
    qc = cohort.qc.set_index("participant_id")
    assert qc.loc["sub-02", "status"] == "excluded"
    assert qc.loc["sub-02", "reason"].startswith("registration failed")
    identity = cohort.manifest["prep_key"]["t1_registration"]      # the method is part of the cohort's identity
    assert identity["library"].startswith("SimpleITK") and identity["resolution"] == FAST.resolution
    # without registration these raw-only participants have no MNI T1: a cohort of nobody is an error
    # that names the reason (issue 19), so no cohort (and no registration identity) is written
    with pytest.raises(ValueError, match="no participant included.*T1 in MNI space"):
        prepare_cohort("bids", root, tmp_path / "out2", fx.cfg(modalities=["smri"], t1_source="fmriprep"),
                       progress=False)
