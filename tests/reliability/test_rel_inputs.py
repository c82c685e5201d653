"""Bad input to the loaders (property-based): a clear error naming the file (and participant) and
the reason, or a recorded exclusion; never a crash deep in numpy and never a silently wrong value.

Participants files (BOM, other encodings, missing/renamed columns, odd ages, duplicated IDs, sex in
every convention), XCP-D time-series TSVs (NaN/zero columns, too few rows, wrong or reordered
columns), NIfTI (wrong dimensionality, NaN/inf voxels, odd or mismatched affines, truncated gzip).
"""
from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import prep_fixtures as pf
from amage_core.config import PrepConfig
from amage_core.data import qc
from amage_core.data.atlas import load_atlas
from amage_core.data.fmri import participant_fmri
from amage_core.data.smri import participant_t1
from amage_core.data.sources import bids, camcan
from amage_core.data.sources.base import ParticipantRecord

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CATEGORIES = {qc.MISSING_MODALITY, qc.UNREADABLE_NIFTI, qc.WRONG_DIM, qc.TOO_FEW_VOLUMES,
              qc.EXCESSIVE_MOTION, qc.EMPTY_REGIONS, qc.MISSING_AGE, qc.IMPLAUSIBLE_AGE, qc.DUPLICATE_ID,
              qc.UNREADABLE_TABLE, qc.NOT_NORMAL, qc.EMPTY_IMAGE, qc.SINGULAR, qc.MISMATCHED_GRID}


def assert_clear_exclusion(exc: qc.QCError, participant: str, path: Path | None) -> None:
    """A QCError names the participant, the file and a counted reason category."""
    text = str(exc)
    assert participant in text, text
    if path is not None:
        assert str(path) in text, text
    assert qc.category(exc.reason) in CATEGORIES, text


# --------------------------------------------------------------------------------------------
# participants files
# --------------------------------------------------------------------------------------------
SEX = {"M": "M", "F": "F", "m": "M", "f": "F", "male": "M", "Female": "F", "MALE": "M", " F ": "F",
       "man": "M", "woman": "F", "1": "M", "2": "F", "1.0": "M", "2.0": "F",
       "": None, "n/a": None, "O": None, "other": None, "U": None}
BAD_SEX_CODES = ["0", "3", "-1", "1.5"]            # numeric, but not the 1 = male / 2 = female code
AGES = st.one_of(
    st.floats(5, 100, allow_nan=False).map(lambda a: f"{a:.2f}"),            # plausible
    st.integers(5, 100).map(lambda a: f" {a} "),                              # padded
    st.sampled_from(["3.3e1", "150", "-3", "0", "999", "inf", "-inf", "nan", "",
                     "n/a", "forty", "45,5", "33y", "NaN"]),
)


def expected_age(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


@st.composite
def participants_files(draw):
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.sampled_from(["01", "sub-01", "02", "sub-03", "CC110033", "sub-A7"]),
                        min_size=n, max_size=n))
    ages = draw(st.lists(AGES, min_size=n, max_size=n))
    sexes = draw(st.lists(st.sampled_from(list(SEX) + BAD_SEX_CODES * 0), min_size=n, max_size=n))
    bad_code = draw(st.sampled_from([None, None, None, *BAD_SEX_CODES]))
    if bad_code is not None:
        sexes[draw(st.integers(0, n - 1))] = bad_code
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "gbk", "utf-16"]))
    columns = draw(st.sampled_from(["ok", "ok", "ok", "no age", "Age", "no sex", "no id"]))
    return ids, ages, sexes, bad_code, encoding, columns


@SETTINGS
@given(spec=participants_files())
def test_participants_files(tmp_path_factory, spec):
    ids, ages, sexes, bad_code, encoding, columns = spec
    root = tmp_path_factory.mktemp("bids")
    df = pd.DataFrame({"participant_id": ids, "age": ages, "sex": sexes, "note": "中文 备注"
                       if encoding in ("gbk", "utf-16") else "naïve"})
    df = {"no age": df.drop(columns="age"), "Age": df.rename(columns={"age": "Age"}),
          "no sex": df.drop(columns="sex"), "no id": df.drop(columns="participant_id")}.get(columns, df)
    tsv = root / "participants.tsv"
    tsv.write_bytes(df.to_csv(sep="\t", index=False).encode(encoding))

    if encoding in ("latin-1", "gbk", "utf-16"):
        with pytest.raises(ValueError, match=r"not UTF-8") as exc:
            bids.scan(root, None, PrepConfig())
        assert str(tsv) in str(exc.value)
        return
    if columns != "ok":
        with pytest.raises(ValueError, match=r"missing column") as exc:
            bids.scan(root, None, PrepConfig())
        assert str(tsv) in str(exc.value)
        return
    if bad_code is not None:
        with pytest.raises(ValueError, match=r"sex") as exc:
            bids.scan(root, None, PrepConfig())
        assert str(tsv) in str(exc.value) and bad_code.strip() in str(exc.value)
        return
    records = bids.scan(root, None, PrepConfig()).records
    keys = [i if i.startswith("sub-") else f"sub-{i}" for i in ids]
    assert [r.participant_id for r in records] == keys
    for r, key, age, sex in zip(records, keys, ages, sexes):
        want = expected_age(age)
        assert (r.age is None and want is None) or r.age == want, (age, r.age)
        assert r.sex == SEX[sex], (sex, r.sex)
        assert (r.problem is not None) == (keys.count(key) > 1)
        if r.problem is None:
            try:
                qc.check_age(r.participant_id, r.age, 5.0, 100.0, r.demographics)
            except qc.QCError as exc:
                assert_clear_exclusion(exc, key, tsv)
                assert want is None or not math.isfinite(want) or not 5 <= want <= 100
            else:
                assert want is not None and 5 <= want <= 100


@pytest.mark.parametrize("content", [b"", b"\n", b"participant_id\tage\tsex\n"])
def test_empty_participants_files(tmp_path, content):
    (tmp_path / "participants.tsv").write_bytes(content)
    if content.startswith(b"participant_id"):
        from amage_core.data.prepare import prepare_cohort

        with pytest.raises(ValueError, match="no participants"):
            prepare_cohort("bids", tmp_path, tmp_path / "out", pf.cfg(), progress=False)
        return
    with pytest.raises(ValueError, match=r"participants\.tsv"):
        bids.scan(tmp_path, None, PrepConfig())


@SETTINGS
@given(layout=st.sampled_from(["standard", "scored", "bids"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "gbk"]),
       codes=st.lists(st.sampled_from(["1", "2", "", "3"]), min_size=1, max_size=4))
def test_camcan_demographics_in_each_layout(tmp_path_factory, layout, encoding, codes):
    """Cam-CAN's three demographics files, as distributed (UTF-8, BOM) or re-saved as GBK."""
    root = tmp_path_factory.mktemp("release004")
    (root / "BIDSsep" / "anat").mkdir(parents=True)
    ids = [f"CC{110033 + i}" for i in range(len(codes))]
    text = {"1": "MALE", "2": "FEMALE", "": "", "3": ""}
    if layout == "standard":
        df = pd.DataFrame({"CCID": ids, "Age": 30, "Hand": 80, "Sex": [text[c] for c in codes]})
        path = root / "standard_data.csv"
    elif layout == "scored":
        df = pd.DataFrame({"Observations": ids, "age": 30, "hand": 1, "gender_text": [text[c] for c in codes],
                           "gender_code": codes})
        path = root / "cc700-scored" / "participant_data.csv"
        path.parent.mkdir()
    else:
        df = pd.DataFrame({"participant_id": [f"sub-{i}" for i in ids], "age": 30, "sex": [text[c] for c in codes]})
        path = root / "BIDSsep" / "anat" / "participants.tsv"
    df["note"] = "备注" if encoding == "gbk" else "note"
    path.write_bytes(df.to_csv(sep="\t" if path.suffix == ".tsv" else ",", index=False).encode(encoding))
    scan = lambda: camcan.scan(root, None, PrepConfig(modalities=["smri"]))  # noqa: E731
    if encoding == "gbk":
        with pytest.raises(ValueError, match=r"not UTF-8") as exc:
            scan()
        assert str(path) in str(exc.value)
        return
    records = scan().records
    assert [r.participant_id for r in records] == [f"sub-{i}" for i in ids]
    assert [r.sex for r in records] == [{"1": "M", "2": "F"}.get(c) for c in codes]
    assert all(r.age == 30.0 and r.demographics == path for r in records)


# --------------------------------------------------------------------------------------------
# XCP-D time series against the atlas
# --------------------------------------------------------------------------------------------
NAMES = ["A", "B", "C", "D", "E", "F"]


@pytest.fixture(scope="module")
def small_atlas(tmp_path_factory):
    path = tmp_path_factory.mktemp("atlas") / "six.tsv"
    pd.DataFrame({"name": NAMES, "network": ["n1"] * 3 + ["n2"] * 3, "x": range(6), "y": 0, "z": 0}).to_csv(
        path, sep="\t", index=False)
    return load_atlas(str(path))


def reference_fc(ts: np.ndarray) -> np.ndarray:
    r = np.corrcoef(ts, rowvar=False)
    z = np.arctanh(np.clip(r, -(1 - 1e-6), 1 - 1e-6))
    np.fill_diagonal(z, 0.0)
    return z


@SETTINGS
@given(n_rows=st.sampled_from([0, 1, 5, 19, 20, 40, 60]),
       layout=st.sampled_from(["atlas order", "permuted", "renamed one", "permuted, renamed one",
                               "other names", "one column short", "extra named column", "extra unnamed column",
                               "duplicated name"]),
       damage=st.dictionaries(st.integers(0, 5), st.sampled_from(["nan", "zero", "inf", "constant", "one nan"]),
                              max_size=2),
       seed=st.integers(0, 2**16))
def test_timeseries_tsvs(tmp_path_factory, small_atlas, n_rows, layout, damage, seed):
    ts = pf.series(n_rows, 6, seed)
    for j, kind in damage.items():
        if n_rows:
            ts[:, j] = {"nan": np.nan, "zero": 0.0, "inf": np.inf, "constant": 3.0}.get(kind, ts[:, j])
            if kind == "one nan":
                ts[n_rows // 2, j] = np.nan
    order = list(range(6))
    names = list(NAMES)
    if layout.startswith("permuted"):
        order = [3, 0, 5, 1, 4, 2]
        names = [NAMES[i] for i in order]
    if "renamed one" in layout:
        names[1] = "Q"
    if layout == "other names":
        names = ["u", "v", "w", "x", "y", "z"]
    if layout == "duplicated name":
        names[1] = names[0]
    data = ts[:, order]
    if layout == "one column short":
        data, names = data[:, :5], names[:5]
    if layout.startswith("extra"):
        data = np.c_[data, np.ones(n_rows)]
        names = names + (["G"] if layout == "extra named column" else [""])
    path = tmp_path_factory.mktemp("ts") / "sub-X_task-rest_seg-six_stat-mean_timeseries.tsv"
    header = "\t".join(names)
    rows = "\n".join("\t".join("n/a" if np.isnan(v) else repr(float(v)) for v in row) for row in data)
    path.write_text(header + "\n" + rows + ("\n" if n_rows else ""))
    record = ParticipantRecord("sub-X", 30.0, "F", "c", timeseries=path)
    try:
        result = participant_fmri(record, small_atlas, pf.cfg(min_volumes=20))
    except qc.QCError as exc:
        assert_clear_exclusion(exc, "sub-X", path)
        return
    # included: it must be the right answer, from the right columns
    assert n_rows >= 20 and not damage
    assert layout in ("atlas order", "permuted", "renamed one", "other names", "extra named column",
                      "extra unnamed column"), f"{layout}: accepted an ambiguous header"
    np.testing.assert_allclose(result.connectivity, reference_fc(ts), rtol=1e-4, atol=1e-5)


def test_timeseries_with_overflowing_values_are_an_exclusion(tmp_path, small_atlas):
    ts = pf.series(40, 6, 0)
    ts[:, 2] = 1e300 * np.sign(ts[:, 2])
    path = tmp_path / "sub-X_task-rest_seg-six_stat-mean_timeseries.tsv"
    pd.DataFrame(ts, columns=NAMES).to_csv(path, sep="\t", index=False)
    with pytest.raises(qc.QCError) as exc:
        participant_fmri(ParticipantRecord("sub-X", 30.0, "F", "c", timeseries=path), small_atlas,
                         pf.cfg(min_volumes=20))
    assert_clear_exclusion(exc.value, "sub-X", path)


def test_an_xcpd_series_for_another_atlas_is_named(tmp_path):
    deriv = tmp_path / "derivatives"
    pf.xcpd_tsv(deriv, "sub-01", "Schaefer100", pf.series(40, 100, 0), [f"r{i}" for i in range(100)])
    (tmp_path / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t30\tM\n")
    record = bids.scan(tmp_path, None, pf.cfg()).records[0]
    with pytest.raises(qc.QCError, match=r"only for atlas\(es\) Schaefer100, not dosenbach160"):
        participant_fmri(record, load_atlas("dosenbach160"), pf.cfg())


def test_a_regions_table_without_coordinates_is_named(tmp_path):
    path = tmp_path / "regions.tsv"
    pd.DataFrame({"name": NAMES, "x": 0.0}).to_csv(path, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"regions\.tsv: atlas table lacks column\(s\) \['y', 'z'\]"):
        load_atlas(str(path))


# --------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def t1_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t1")
    t1, mask = folder / "t1.nii.gz", folder / "mask.nii.gz"
    pf.write_t1(t1, 0, mask)
    return t1, mask, np.asarray(nib.load(t1).dataobj), pf.brain()


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), affine), path)
    return path


def _save_raw_affine(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """A NIfTI whose sform is ``affine`` as written, even when nibabel would refuse to build it."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(None, code=0)
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = affine[0], affine[1], affine[2]
    hdr["sform_code"] = 1
    hdr["vox_offset"] = 352
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + data.astype(np.float32).tobytes(order="F"))
    return path


def _run_t1(t1, mask, cfg=None) -> np.ndarray:
    return participant_t1(ParticipantRecord("sub-X", 30.0, "F", "c", t1_mni=t1, brain_mask=mask), cfg or pf.cfg())


def test_a_good_t1_passes(t1_pair):
    out = _run_t1(*t1_pair[:2])
    assert out.shape == (12, 14, 12) and np.isfinite(out).all() and out.min() == 0 and out.max() == 1


def _affine(kind: str) -> np.ndarray:
    a = pf.AFFINE.copy()
    if kind == "shifted":
        a[:3, 3] += [24.0, 0, 0]
    elif kind == "singular":
        a[2, 2] = 0.0
    elif kind == "nan":
        a[0, 3] = np.nan
    elif kind == "far away":
        a[:3, 3] += 1000.0
    return a


@pytest.mark.parametrize("case, category", [
    ("2D", qc.WRONG_DIM), ("5D", qc.WRONG_DIM), ("two volumes", qc.WRONG_DIM),
    ("NaN slab in the brain", qc.UNREADABLE_NIFTI), ("inf voxel in the brain", qc.UNREADABLE_NIFTI),
    ("all NaN", qc.UNREADABLE_NIFTI), ("constant", qc.EMPTY_IMAGE),
    ("singular affine", qc.UNREADABLE_NIFTI), ("NaN in the affine", qc.UNREADABLE_NIFTI),
    ("mask shifted 24 mm", qc.MISMATCHED_GRID), ("mask of another shape", qc.MISMATCHED_GRID),
    ("outside the MNI box", qc.EMPTY_IMAGE), ("empty mask", qc.EMPTY_IMAGE),
    ("text, not NIfTI", qc.UNREADABLE_NIFTI), ("empty file", qc.UNREADABLE_NIFTI),
])
def test_bad_t1_images_are_excluded_with_the_reason(tmp_path, t1_pair, case, category):
    t1, mask, data, brain = t1_pair
    p = tmp_path / "sub-X_T1w.nii.gz"
    slab = brain & (np.indices(brain.shape)[0] == 10)
    if case == "2D":
        _save(p, data[:, :, 10], pf.AFFINE)
    elif case == "5D":
        _save(p, data[..., None, None], pf.AFFINE)
    elif case == "two volumes":
        _save(p, np.stack([data, data], -1), pf.AFFINE)
    elif case == "NaN slab in the brain":
        _save(p, np.where(slab, np.nan, data).astype(np.float32), pf.AFFINE)
    elif case == "inf voxel in the brain":
        d = data.copy()
        d[10, 12, 10] = np.inf
        _save(p, d, pf.AFFINE)
    elif case == "all NaN":
        _save(p, np.full(data.shape, np.nan, np.float32), pf.AFFINE)
    elif case == "constant":
        _save(p, np.ones_like(data), pf.AFFINE)
    elif case == "singular affine":
        p = _save_raw_affine(tmp_path / "sub-X_T1w.nii", data, _affine("singular"))
    elif case == "NaN in the affine":
        p = _save_raw_affine(tmp_path / "sub-X_T1w.nii", data, _affine("nan"))
    elif case == "mask shifted 24 mm":
        p, mask = t1, _save(tmp_path / "mask.nii.gz", brain.astype(np.uint8), _affine("shifted"))
    elif case == "mask of another shape":
        p, mask = t1, _save(tmp_path / "mask.nii.gz", brain[:12].astype(np.uint8), pf.AFFINE)
    elif case == "outside the MNI box":
        _save(p, data, _affine("far away"))
        mask = _save(tmp_path / "mask.nii.gz", brain.astype(np.uint8), _affine("far away"))
    elif case == "empty mask":
        p, mask = t1, _save(tmp_path / "mask.nii.gz", np.zeros(brain.shape, np.uint8), pf.AFFINE)
    elif case == "text, not NIfTI":
        p.write_text("not an image")
    else:
        p.write_bytes(b"")
    with pytest.raises(qc.QCError) as exc:
        _run_t1(p, mask)
    assert_clear_exclusion(exc.value, "sub-X", None)
    assert qc.category(exc.value.reason) == category, str(exc.value)
    assert exc.value.file in (str(p), str(mask))


def test_a_sheared_affine_is_resampled_not_refused(tmp_path, t1_pair):
    """A non-orthogonal (sheared) affine is a valid NIfTI: resampled like any other. The same voxels
    under a sheared header move the brain by up to 24 mm: not in MNI space."""
    from nilearn.image import resample_img

    t1, mask, data, brain = t1_pair
    shear = pf.AFFINE.copy()
    shear[0, 1] = 1.0
    kw = dict(target_affine=shear, target_shape=pf.GRID, force_resample=True, copy_header=True)
    sheared_t1 = resample_img(nib.load(t1), interpolation="continuous", **kw)
    sheared_mask = resample_img(nib.load(mask), interpolation="nearest", **kw)
    out = _run_t1(_save(tmp_path / "t1.nii.gz", sheared_t1.dataobj, shear),
                  _save(tmp_path / "m.nii.gz", sheared_mask.dataobj, shear))
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    with pytest.raises(qc.QCError, match="wrong space"):
        _run_t1(_save(tmp_path / "t1.nii.gz", data, shear), _save(tmp_path / "m.nii.gz", brain.astype(np.uint8), shear))


@SETTINGS
@given(keep=st.floats(0.0, 0.995))
def test_truncated_gzip_t1_is_an_exclusion(tmp_path_factory, t1_pair, keep):
    t1, mask = t1_pair[:2]
    raw = t1.read_bytes()
    p = tmp_path_factory.mktemp("trunc") / "sub-X_T1w.nii.gz"
    p.write_bytes(raw[: int(len(raw) * keep)])
    assume(p.stat().st_size < len(raw))
    with pytest.raises(qc.QCError) as exc:
        _run_t1(p, mask)
    assert_clear_exclusion(exc.value, "sub-X", p)
    assert qc.category(exc.value.reason) == qc.UNREADABLE_NIFTI


def test_nan_voxels_in_a_fine_bold_are_not_averaged_as_zeros(tmp_path):
    """On a 4 mm grid a 5 mm sphere holds several voxels: one NaN voxel would not empty the region,
    nilearn would replace it with 0 and the region's mean would be silently wrong."""
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-80, -112, -72]
    data = (100 + np.random.default_rng(0).standard_normal((41, 50, 41, 40))).astype(np.float32)
    atlas = load_atlas("dosenbach160")
    i, j, k = np.round(np.linalg.inv(affine) @ np.r_[atlas.coords[0], 1])[:3].astype(int)
    data[i, j, k] = np.nan
    func = tmp_path / "fmriprep" / "sub-X" / "func"
    func.mkdir(parents=True)
    bold = func / "sub-X_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms((4.0, 4.0, 4.0, 2.0))
    nib.save(img, bold)
    confounds = pf.write_confounds(func / "sub-X_task-rest_desc-confounds_timeseries.tsv", 40, 0.1)
    record = ParticipantRecord("sub-X", 30.0, "F", "c", bold=bold, confounds=confounds)
    with pytest.raises(qc.QCError, match="non-finite") as exc:
        participant_fmri(record, atlas, pf.cfg())
    assert_clear_exclusion(exc.value, "sub-X", bold)


@pytest.mark.parametrize("case", ["NaN slab", "3D", "truncated", "singular affine"])
def test_bad_bold_images_are_excluded_with_the_reason(tmp_path, case):
    deriv = tmp_path / "derivatives"
    bold = pf.fmriprep_bold(deriv, "sub-X", 40, three_d=case == "3D")
    img = nib.load(bold)
    if case == "NaN slab":
        data = np.asarray(img.dataobj).copy()
        data[8:12] = np.nan
        img = nib.Nifti1Image(data, img.affine, img.header)
        nib.save(img, bold)
    elif case == "truncated":
        pf.truncate(bold, 0.4)
    elif case == "singular affine":
        data = np.asarray(img.dataobj)
        bold.unlink()
        bold = _save_raw_affine(bold.with_name(bold.name[:-3]), data, _affine("singular"))
    record = ParticipantRecord("sub-X", 30.0, "F", "c", bold=bold,
                               confounds=next((deriv / "fmriprep" / "sub-X" / "func").glob("*confounds*.tsv")))
    with pytest.raises(qc.QCError) as exc:
        participant_fmri(record, load_atlas("dosenbach160"), pf.cfg())
    assert_clear_exclusion(exc.value, "sub-X", None)
