"""A whole BIDS-derivatives cohort with broken participants -> prepared cohort, QC, manifest."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import prep_fixtures as fx
from amage_core.data.cohort import load_cohort, write_cohort
from amage_core.data.prepare import prepare_cohort
from amage_core.data.qc import QCError, category


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory):
    return fx.build_bids(tmp_path_factory.mktemp("bids") / "fixture")


@pytest.fixture(scope="module")
def prepared(bids_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "cohort"
    return prepare_cohort("bids", bids_root, out, fx.cfg(), progress=False)


def test_every_participant_gets_the_expected_status_and_reason(prepared):
    qc = prepared.qc
    got = {pid: ("" if s == "included" else category(r))
           for pid, s, r in zip(qc["participant_id"], qc["status"], qc["reason"])}
    assert got == fx.BIDS_EXPECTED
    assert (qc["participant_id"] == "sub-13").sum() == 2          # both duplicate rows are reported
    reasons = dict(zip(qc["participant_id"], qc["reason"]))
    assert "fMRIPrep" in reasons["sub-17"]                         # raw BOLD only: says what to run
    assert "30" in reasons["sub-10"] and "20" in reasons["sub-10"]
    assert "0.900" in reasons["sub-14"]


def test_included_participants_arrays_and_demographics(prepared):
    p = prepared.participants
    assert list(p["participant_id"]) == [f"sub-0{i}" for i in range(1, 7)]
    assert dict(zip(p["participant_id"], p["sex"])) == fx.BIDS_SEX   # M/F, male/female, 1/2
    assert p["age"].tolist() == [20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
    assert list(p.columns[:6]) == ["participant_id", "age", "sex", "cohort", "site", "session"]
    assert (p["dx"] == "control").all()                             # extra columns carried over
    assert prepared.modalities == frozenset({"fmri", "smri"})
    c = prepared.connectivity
    assert c.shape == (6, 160, 160) and c.dtype == np.float32
    assert isinstance(c, np.memmap)
    assert np.allclose(c, np.transpose(c, (0, 2, 1)), atol=1e-6)
    assert np.all(np.diagonal(c, axis1=1, axis2=2) == 0)
    assert prepared.t1.shape == (6, 12, 14, 12)
    assert prepared.t1.min() >= 0 and prepared.t1.max() <= 1
    assert len(prepared.regions) == 160 and prepared.regions["network"].nunique() == 6


def test_xcpd_connectivity_is_fisher_z_of_the_tsv_correlation(prepared, bids_root):
    tsv = next((bids_root / "derivatives/xcp_d/sub-04/func").glob("*_atlas-Dosenbach160_timeseries.tsv"))
    ts = pd.read_csv(tsv, sep="\t").to_numpy()
    expected = np.arctanh(np.clip(np.corrcoef(ts.T), -1 + 1e-6, 1 - 1e-6))
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(prepared.connectivity[3], expected, atol=1e-4)


def test_manifest_and_summary(prepared):
    m = prepared.manifest
    assert m["source"]["name"] == "bids" and len(m["config_hash"]) == 12
    assert set(m["arrays"]) == {"connectivity", "t1"}
    assert m["arrays"]["t1"]["shape"] == [6, 12, 14, 12]
    assert {"numpy", "nilearn", "nibabel"} <= set(m["versions"])
    assert not (prepared.root / "parts").exists()
    summary = json.loads((prepared.root / "qc_summary.json").read_text())
    assert summary["n_included"] == 6 and summary["n_excluded"] == 12
    assert summary["excluded_by_reason"]["duplicate participant ID"] == 2
    table = pd.read_csv(prepared.root / "qc_summary.tsv", sep="\t")
    assert table["n"].sum() == 18


def test_verify_detects_a_damaged_array(prepared, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(prepared.root, copy)
    load_cohort(copy, verify=True)
    arr = np.load(copy / "t1.npy", mmap_mode="r+")
    arr[0, 5, 5, 5] += 1.0
    arr.flush()
    del arr
    load_cohort(copy)                          # without verify, shapes still match
    with pytest.raises(ValueError, match=r"t1\.npy: checksum mismatch"):
        load_cohort(copy, verify=True)


def test_strict_stops_at_the_first_problem_naming_file_and_participant(bids_root, tmp_path):
    # cheap demographic checks run for everyone before any image is opened
    with pytest.raises(QCError) as info:
        prepare_cohort("bids", bids_root, tmp_path / "strict", fx.cfg(strict=True), progress=False)
    assert info.value.participant == "sub-11" and info.value.file.endswith("participants.tsv")
    assert "implausible age" in str(info.value)
    root = tmp_path / "small"
    root.mkdir()
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [30, 40], "sex": ["F", "M"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    fx.fmriprep_anat(root / "derivatives", "sub-02")
    fx.truncate(fx.fmriprep_bold(root / "derivatives", "sub-02", 40), 0.3)
    with pytest.raises(QCError) as info:
        prepare_cohort("bids", root, tmp_path / "strict2", fx.cfg(strict=True), progress=False)
    err = info.value
    assert err.participant == "sub-01" and "missing modality" in err.reason
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-02\t40\tM\n")
    with pytest.raises(QCError) as info:
        prepare_cohort("bids", root, tmp_path / "strict3", fx.cfg(strict=True), progress=False)
    err = info.value
    assert err.participant == "sub-02" and err.file.endswith("_desc-preproc_bold.nii.gz")
    assert "sub-02" in str(err) and "unreadable NIfTI" in str(err) and err.file in str(err)


def test_config_change_is_detected_and_rebuild_replaces(prepared, bids_root, tmp_path):
    import shutil

    out = tmp_path / "c"
    shutil.copytree(prepared.root, out)
    same = prepare_cohort("bids", bids_root, out, fx.cfg(n_jobs=2), progress=False)  # n_jobs not hashed
    assert same.manifest["created"] == prepared.manifest["created"]
    with pytest.raises(ValueError, match=r"another configuration.*fd_threshold"):
        prepare_cohort("bids", bids_root, out, fx.cfg(fd_threshold=1.0), progress=False)
    rebuilt = prepare_cohort("bids", bids_root, out, fx.cfg(fd_threshold=1.0), progress=False, rebuild=True)
    assert "sub-14" in set(rebuilt.participants["participant_id"])


def test_drop_region_and_zero_keep_the_participant_with_empty_regions(bids_root, tmp_path):
    cfg = fx.cfg(empty_regions="drop-region", modalities=["fmri"])
    c = prepare_cohort("bids", bids_root, tmp_path / "drop", cfg, progress=False)
    assert "sub-09" in set(c.participants["participant_id"])
    assert c.connectivity.shape[1:] == (157, 157) and len(c.regions) == 157
    assert c.regions["index"].tolist() == list(range(157))
    assert c.t1 is None and c.modalities == frozenset({"fmri"})
    z = prepare_cohort("bids", bids_root, tmp_path / "zero", fx.cfg(empty_regions="zero", modalities=["fmri"]),
                       progress=False)
    row = list(z.participants["participant_id"]).index("sub-09")
    assert z.connectivity.shape[1:] == (160, 160)
    assert np.all(z.connectivity[row, 3] == 0) and np.all(z.connectivity[row, :, 11] == 0)
    assert np.isfinite(z.connectivity).all()


def test_write_cohort_roundtrip_for_fixtures(tmp_path):
    rng = np.random.default_rng(0)
    parts = pd.DataFrame({"participant_id": ["sub-a", "sub-b", "sub-c"], "age": [20.5, 40, 60],
                          "sex": ["M", "F", "F"], "dx": ["x", "y", "z"]})
    c = write_cohort(tmp_path / "w", parts, connectivity=rng.random((3, 4, 4)), t1=rng.random((3, 2, 3, 2)),
                     tables=rng.random((3, 5)), table_columns=list("abcde"))
    assert c.n == 3 and c.modalities == frozenset({"fmri", "smri", "table"})
    assert c.connectivity.dtype == np.float32 and c.table_columns == list("abcde")
    assert list(c.participants.columns) == ["participant_id", "age", "sex", "cohort", "site", "session", "dx"]
    assert c.ages.tolist() == [20.5, 40.0, 60.0]
    assert (c.qc["status"] == "included").all()
    load_cohort(tmp_path / "w", verify=True)
    with pytest.raises(ValueError, match="connectivity must be"):
        write_cohort(tmp_path / "bad", parts, connectivity=rng.random((2, 4, 4)))


def test_not_a_cohort_folder_is_refused(bids_root, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and not a prepared cohort"):
        prepare_cohort("bids", bids_root, tmp_path / "busy", fx.cfg(), progress=False)
    with pytest.raises(FileNotFoundError, match="not a prepared cohort"):
        load_cohort(tmp_path / "busy")


def test_tangent_is_refused_with_what_to_do(bids_root, tmp_path):
    with pytest.raises(ValueError, match="tangent"):
        prepare_cohort("bids", bids_root, tmp_path / "t", fx.cfg(fc_kind="tangent"), progress=False)
