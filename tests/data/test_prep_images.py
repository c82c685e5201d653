"""fMRI and T1 steps on tiny images: region order, empty regions, motion, the shared T1 grid."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import prep_fixtures as fx
from amage_core.data import fmri, smri
from amage_core.data.atlas import NO_NETWORK, Atlas
from amage_core.data.qc import QCError
from amage_core.data.sources.base import ParticipantRecord


def _atlas(names, kind="coords", **kw) -> Atlas:
    n = len(names)
    regions = pd.DataFrame({"index": range(n), "name": names, "network": NO_NETWORK,
                            "x": np.zeros(n), "y": np.zeros(n), "z": np.zeros(n)})
    return Atlas("test", regions, kind=kind, **kw)


def test_empty_regions_nan_zero_and_constant():
    ts = fx.series(30, 5, 0)
    ts[4, 1] = np.nan
    ts[:, 2] = 0.0
    ts[:, 3] = 7.0
    assert fmri.empty_regions(ts).tolist() == [False, True, True, True, False]


def test_framewise_displacement_mean_ignores_na(tmp_path):
    path = fx.write_confounds(tmp_path / "c.tsv", 11, 0.3)
    assert fmri.mean_framewise_displacement(path, "sub-x") == pytest.approx(0.3)
    assert np.isnan(fmri.mean_framewise_displacement(None, "sub-x"))
    (tmp_path / "bad.tsv").write_text("trans_x\n0.1\n")
    with pytest.raises(QCError, match="framewise_displacement"):
        fmri.mean_framewise_displacement(tmp_path / "bad.tsv", "sub-x")


def test_timeseries_columns_follow_the_atlas_order(tmp_path):
    ts = fx.series(30, 3, 1)
    df = pd.DataFrame(ts, columns=["b", "c", "a"]).assign(extra=1.0)
    got = fmri.align_to_atlas(df, _atlas(["a", "b", "c"]), tmp_path, "sub-x")
    np.testing.assert_array_equal(got, ts[:, [2, 0, 1]])
    by_position = fmri.align_to_atlas(pd.DataFrame(ts, columns=["#1", "#2", "#3"]), _atlas(["a", "b", "c"]),
                                      tmp_path, "sub-x")
    np.testing.assert_array_equal(by_position, ts)
    with pytest.raises(QCError, match="2 columns, atlas test has 3"):
        fmri.align_to_atlas(pd.DataFrame(ts[:, :2]), _atlas(["a", "b", "c"]), tmp_path, "sub-x")


def test_labels_masker_maps_label_values_to_atlas_order(tmp_path):
    deriv = tmp_path / "derivatives"
    n_vol = 120
    bold = fx.fmriprep_bold(deriv, "sub-01", n_vol, seed=3)
    img = nib.load(bold)
    data = np.asarray(img.dataobj)
    rng = np.random.default_rng(0)
    signals = rng.standard_normal((n_vol, 3)) * 20
    labels = np.zeros(fx.GRID, dtype=np.int16)
    for value, (sl, k) in zip((5, 9, 12), [((slice(2, 6),) * 3, 0), ((slice(8, 12),) * 3, 1),
                                          ((slice(14, 18),) * 3, 2)]):
        labels[sl] = value
        data[sl] += signals[:, k]
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bold)
    nib.save(nib.Nifti1Image(labels, fx.AFFINE), tmp_path / "labels.nii.gz")
    atlas = _atlas(["r9", "r5", "r12", "r40"], kind="labels", maps=str(tmp_path / "labels.nii.gz"),
                   label_values=(9, 5, 12, 40))
    ts = fmri.bold_timeseries(bold, atlas, fx.cfg(), "sub-01")
    assert ts.shape == (n_vol, 4) and np.isnan(ts[:, 3]).all()       # label 40 absent -> empty
    corr = np.corrcoef(ts[:, :3].T, signals.T)[:3, 3:]
    assert corr.argmax(axis=1).tolist() == [1, 0, 2]                  # r9 <- signal 1, r5 <- signal 0
    assert fmri.empty_regions(ts).tolist() == [False, False, False, True]


def test_partial_correlation_without_shrinkage_is_refused_when_singular(tmp_path):
    names = [f"r{i}" for i in range(50)]
    tsv = fx.write_timeseries_tsv(tmp_path / "ts.tsv", fx.series(40, 50, 0), names)
    rec = ParticipantRecord("sub-01", 30.0, "F", "t", timeseries=tsv)
    with pytest.raises(QCError, match="singular connectivity"):
        fmri.participant_fmri(rec, _atlas(names), fx.cfg(fc_kind="partial correlation"))
    res = fmri.participant_fmri(rec, _atlas(names), fx.cfg(fc_kind="partial correlation",
                                                           fc_estimator="ledoit-wolf"))
    assert np.isfinite(res.connectivity).all() and res.n_volumes == 40


def test_t1_grid_is_shared_isotropic_and_covers_the_brain():
    a = smri.target_grid((12, 14, 12), 2)
    assert np.allclose(np.diag(a)[:3], a[0, 0])                      # isotropic voxels
    far = a @ np.array([11, 13, 11, 1.0])
    assert a[0, 3] < -65 and far[0] > 65 and a[1, 3] < -100 and far[1] > 65


def test_mni_t1_is_masked_normalised_and_independent_of_the_input_grid(tmp_path):
    t1, mask = fx.write_t1(tmp_path / "t1.nii.gz", 0, tmp_path / "mask.nii.gz"), tmp_path / "mask.nii.gz"
    cfg = fx.cfg()
    out = smri.mni_t1(t1, mask, cfg, "sub-01")
    assert out.shape == (12, 14, 12) and out.dtype == np.float32
    assert out.min() == 0 and out.max() == 1
    m = np.asarray(nib.load(mask).dataobj)
    fine = nib.Nifti1Image(np.repeat(np.repeat(np.repeat(np.asarray(nib.load(t1).dataobj), 2, 0), 2, 1), 2, 2),
                           fx.AFFINE @ np.diag([0.5, 0.5, 0.5, 1]) + np.diag([0, 0, 0, 0]))
    fine_mask = nib.Nifti1Image(np.repeat(np.repeat(np.repeat(m, 2, 0), 2, 1), 2, 2), fine.affine)
    nib.save(fine, tmp_path / "fine.nii.gz")
    nib.save(fine_mask, tmp_path / "fine_mask.nii.gz")
    other = smri.mni_t1(tmp_path / "fine.nii.gz", tmp_path / "fine_mask.nii.gz", cfg, "sub-01")
    assert np.corrcoef(out.ravel(), other.ravel())[0, 1] > 0.9


def test_t1_bad_inputs_and_the_authors_resize(tmp_path):
    four = tmp_path / "t1_4d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), four)
    with pytest.raises(QCError, match="wrong dimensionality"):
        smri.mni_t1(four, None, fx.cfg(), "sub-01")
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.full(fx.GRID, 5, np.float32), fx.AFFINE), flat)
    with pytest.raises(QCError, match="empty image"):
        smri.mni_t1(flat, None, fx.cfg(), "sub-01")
    t1 = fx.write_t1(tmp_path / "t1.nii.gz")
    out = smri.resized_t1(t1, (10, 9, 8), "sub-01")
    assert out.shape == (10, 9, 8) and out.min() == 0 and out.max() == 1
    rec = ParticipantRecord("sub-01", 30.0, "F", "t", t1_raw=t1)
    with pytest.raises(QCError, match="set t1_source='auto' or 'register' to register it"):
        smri.participant_t1(rec, fx.cfg(t1_source="fmriprep"))
    with pytest.raises(QCError, match="missing modality: T1 in MNI space .*no raw T1w"):
        smri.participant_t1(ParticipantRecord("sub-01", 30.0, "F", "t"), fx.cfg())


def test_bold_with_confounds_of_another_length_is_excluded(tmp_path):
    """The BOLD route: fMRIPrep confounds with fewer rows than the BOLD has volumes (a truncated or
    mismatched file) exclude the participant, naming the BOLD and both lengths, instead of being
    applied to the wrong volumes."""
    deriv = tmp_path / "derivatives"
    bold = fx.fmriprep_bold(deriv, "sub-01", 120, seed=3)
    fx.fmriprep_confounds(deriv, "sub-01", 100, fd=0.1)             # overwrites: 100 rows
    atlas = _atlas(["r0", "r1"])
    with pytest.raises(QCError) as err:
        fmri.bold_timeseries(bold, atlas, fx.cfg(), "sub-01")
    reason = err.value.reason
    assert err.value.participant == "sub-01" and err.value.file == str(bold)
    assert reason.startswith("mismatched length") and "100" in reason and "120" in reason, reason
