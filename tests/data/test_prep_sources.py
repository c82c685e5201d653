"""Sources: exact file names of Cam-CAN, OASIS-3 and fMRIPrep/XCP-D -> records (ages, sex, files)."""
from __future__ import annotations

import pandas as pd
import pytest

import prep_fixtures as fx
from amage_core.data.prepare import prepare_cohort
from amage_core.data.sources import scan_source
from amage_core.data.sources.base import normalise_sex
from amage_core.data.sources.camcan import read_demographics
from amage_core.data.sources.derivatives import atlas_matches, find_xcpd, locate_derivatives
from amage_core.data.sources.oasis3 import age_at_session


@pytest.mark.parametrize("value, expected", [
    ("M", "M"), ("f", "F"), ("Male", "M"), ("FEMALE", "F"), (1, "M"), (2, "F"), ("1", "M"),
    ("2.0", "F"), (3, None), ("", None), (None, None), (float("nan"), None), ("other", None),
])
def test_sex_is_normalised_from_every_coding(value, expected):
    assert normalise_sex(value) == expected


def test_xcpd_both_namings_and_atlas_names(tmp_path):
    names = ["a", "b"]
    ts = fx.series(5, 2, 0)
    deriv = tmp_path / "derivatives"
    new = fx.xcpd_tsv(deriv, "sub-1", "Schaefer100", ts, names, naming="new")
    old = fx.xcpd_tsv(deriv, "sub-2", "Schaefer100", ts, names, naming="old")
    mid = deriv / "xcp_d/sub-3/ses-01/func/sub-3_ses-01_task-rest_atlas-Gordon_stat-mean_timeseries.tsv"
    fx.write_timeseries_tsv(mid, ts, names)
    fx.write_timeseries_tsv(mid.with_name("sub-3_ses-01_task-nback_atlas-Schaefer100_timeseries.tsv"), ts, names)
    dirs = locate_derivatives(None, tmp_path)
    assert find_xcpd(dirs, "sub-1", "schaefer100-7").timeseries == new
    assert find_xcpd(dirs, "sub-2", "schaefer100").timeseries == old
    found = find_xcpd(dirs, "sub-3", "schaefer100", ses="ses-01")
    assert found.timeseries is None and found.atlases_found == ["Gordon"]   # task-nback ignored
    assert find_xcpd(dirs, "sub-3", "gordon", ses="ses-01").timeseries == mid
    assert atlas_matches("Dosenbach160", "dosenbach160") and atlas_matches("Schaefer400", "schaefer400-17")
    assert not atlas_matches("Schaefer400", "schaefer100-7")


# ------------------------------------------------------------------ Cam-CAN
def test_camcan_demographics_files_and_their_sex_codings(tmp_path):
    std = tmp_path / "standard_data.csv"
    std.write_text("CCID,Age,Hand,Sex\nCC110033,24,100,MALE\nCC110037,18,39,FEMALE\n")
    scored = tmp_path / "participant_data.csv"
    scored.write_text("Observations,age,hand,gender_text,gender_code\nCC110033,24,100,MALE,1\nCC110037,18,39,FEMALE,2\n")
    tsv = tmp_path / "participants.tsv"
    tsv.write_text("participant_id\tage\tsex\nsub-CC110033\t24\tMALE\nsub-CC110037\t18\tFEMALE\n")
    for path in (std, scored, tsv):
        df = read_demographics(path)
        assert df["participant_id"].tolist() == ["sub-CC110033", "sub-CC110037"]
        assert df["age"].tolist() == [24.0, 18.0] and df["sex"].tolist() == ["M", "F"]
    bad = tmp_path / "bad.csv"
    bad.write_text("CCID,Age\nCC1,3\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) \['Sex'\]"):
        read_demographics(bad)


def _camcan(root, naming: str):
    rel = root / "cc700/mri/pipeline/release004"
    subs = ["sub-CC110033", "sub-CC110037", "sub-CC120049"]
    for i, sub in enumerate(subs):
        if naming == "BIDS_20190411":
            fx.write_t1(rel / naming / "anat" / sub / "anat" / f"{sub}_T1w.nii.gz", i)
            fx.write_bold(rel / naming / "epi_rest" / sub / "epi_rest" / f"{sub}_epi_rest.nii.gz", 3, i)
        else:
            fx.write_t1(rel / naming / "anat" / sub / "anat" / f"{sub}_T1w.nii.gz", i)
            fx.write_bold(rel / naming / "func_rest" / sub / "func" / f"{sub}_task-Rest_bold.nii.gz", 3, i)
    (root / "cc700-scored").mkdir(parents=True)
    (root / "cc700-scored/participant_data.csv").write_text(
        "Observations,age,hand,gender_text,gender_code\nCC110033,24,100,MALE,1\n"
        "CC110037,18,39,FEMALE,2\nCC120049,88,90,FEMALE,2\n")
    return rel, subs


@pytest.mark.parametrize("naming", ["BIDS_20190411", "BIDSsep"])
def test_camcan_refuses_raw_bold_without_derivatives(tmp_path, naming):
    rel, _ = _camcan(tmp_path, naming)
    with pytest.raises(ValueError, match=r"fMRIPrep.*(epi_rest|func_rest)"):
        scan_source("camcan", rel, None, fx.cfg())
    scan = scan_source("camcan", rel, None, fx.cfg(modalities=["smri"]))   # T1 alone needs no derivatives
    assert [r.t1_raw.name for r in scan.records] == [f"{s}_T1w.nii.gz" for s in
                                                     ("sub-CC110033", "sub-CC110037", "sub-CC120049")]
    assert all(r.raw_bold is not None for r in scan.records)


@pytest.mark.parametrize("naming", ["BIDS_20190411", "BIDSsep"])
def test_camcan_with_derivatives_prepares(tmp_path, naming):
    rel, subs = _camcan(tmp_path, naming)
    deriv = tmp_path / "derivatives"
    names = fx.dosenbach_names()
    for i, sub in enumerate(subs[:2]):          # the third has raw BOLD only
        fx.write_timeseries_tsv(deriv / "xcp_d" / sub / "func" /
                                f"{sub}_task-Rest_space-MNI152NLin2009cAsym_seg-Dosenbach160_stat-mean_timeseries.tsv",
                                fx.series(40, 160, i), names)
    c = prepare_cohort("camcan", rel, tmp_path / "out", fx.cfg(t1_source="resize"), derivatives=deriv,
                       progress=False)
    assert c.participants["participant_id"].tolist() == subs[:2]
    assert c.participants["sex"].tolist() == ["M", "F"] and c.participants["age"].tolist() == [24.0, 18.0]
    assert set(c.participants["cohort"]) == {"camcan"}
    assert c.t1.shape == (2, 12, 14, 12) and float(c.t1.max()) == pytest.approx(1.0)
    reason = c.qc.set_index("participant_id").loc["sub-CC120049", "reason"]
    assert reason.startswith("missing modality") and "fMRIPrep" in reason


# ------------------------------------------------------------------ OASIS-3
def _oasis(root):
    names = fx.dosenbach_names()
    deriv = root / "derivatives"
    for ses in ("ses-d0000", "ses-d0129", "ses-d0400"):
        sub = "sub-OAS30001"
        fx.write_t1(root / sub / ses / "anat" / f"{sub}_{ses}_acq-TSE_run-01_T1w.nii.gz")
        if ses != "ses-d0000":
            fx.write_bold(root / sub / ses / "func" / f"{sub}_{ses}_task-rest_run-01_bold.nii.gz", 3)
            fx.xcpd_tsv(deriv, sub, "dosenbach160", fx.series(40, 160, 1), names, ses=ses)
            fx.fmriprep_confounds(deriv, sub, 40, 0.1, ses=ses)
    for sub, ses in (("sub-OAS30002", "ses-d0050"), ("sub-OAS30003", "ses-d0010"), ("sub-OAS30004", "ses-d0000")):
        fx.write_t1(root / sub / ses / "anat" / f"{sub}_{ses}_run-01_T1w.nii.gz")
        fx.xcpd_tsv(deriv, sub, "dosenbach160", fx.series(40, 160, 2), names, ses=ses)
    (root / "OASIS3_demographics.csv").write_text(
        "OASISID,AgeatEntry,GENDER,Education\nOAS30001,65.0,2,16\nOAS30002,70.5,1,12\n"
        "OAS30004,60,1,12\nOAS30004,61,1,12\n")
    (root / "OASIS3_UDSb4_cdr.csv").write_text(
        "OASISID,days_to_visit,CDRTOT,MMSE\nOAS30001,100,0.5,27\nOAS30001,420,0,29\n"
        "OAS30002,40,0,30\nOAS30003,500,0,30\n")
    (root / "OASIS3_UDSd1_diagnoses.csv").write_text(
        "OASISID,days_to_visit,NORMCOG,DEMENTED\nOAS30001,390,1,0\nOAS30002,45,1,0\nOAS30003,10,1,0\n")
    return root


def test_oasis3_age_arithmetic():
    assert age_at_session(65.0, "ses-d0129") == pytest.approx(65.0 + 129 / 365.25)
    assert age_at_session(70.5, "ses-d0000") == 70.5
    with pytest.raises(ValueError, match="ses-dNNNN"):
        age_at_session(60, "ses-01")


def test_oasis3_earliest_session_with_both_modalities(tmp_path):
    root = _oasis(tmp_path / "oasis")
    scan = scan_source("oasis3", root, None, fx.cfg())
    recs = {r.participant_id: r for r in scan.records}
    r = recs["sub-OAS30001"]
    assert r.session == "ses-d0129" and r.age == pytest.approx(65.0 + 129 / 365.25) and r.sex == "F"
    assert r.t1_raw.name == "sub-OAS30001_ses-d0129_acq-TSE_run-01_T1w.nii.gz" and r.timeseries is not None
    assert recs["sub-OAS30002"].sex == "M" and recs["sub-OAS30002"].age == pytest.approx(70.5 + 50 / 365.25)
    assert recs["sub-OAS30003"].age is None          # not in the demographics: missing age later
    assert recs["sub-OAS30004"].problem.startswith("duplicate participant ID")
    every = scan_source("oasis3", root, None, fx.cfg(), sessions="all")
    assert [r.session for r in every.records if r.participant_id == "sub-OAS30001"] == \
        ["ses-d0000", "ses-d0129", "ses-d0400"]


def test_oasis3_cognitively_normal_filter_uses_the_nearest_visit(tmp_path):
    root = _oasis(tmp_path / "oasis")
    scan = scan_source("oasis3", root, None, fx.cfg(), cognitively_normal=True)
    recs = {r.participant_id: r for r in scan.records}
    assert recs["sub-OAS30001"].session == "ses-d0400" and recs["sub-OAS30001"].problem is None
    assert recs["sub-OAS30002"].problem is None
    assert recs["sub-OAS30003"].problem.startswith("not cognitively normal")   # CDR visit 490 days away
    c = prepare_cohort("oasis3", root, tmp_path / "out", fx.cfg(modalities=["fmri"]), progress=False,
                       cognitively_normal=True)
    qc = c.qc.set_index("participant_id")
    assert c.participants["participant_id"].tolist() == ["sub-OAS30001", "sub-OAS30002"]
    assert c.participants["session"].tolist() == ["ses-d0400", "ses-d0050"]
    assert qc.loc["sub-OAS30003", "reason"].startswith("not cognitively normal")
    with pytest.raises(FileNotFoundError, match="cognitively_normal"):
        scan_source("oasis3", root, None, fx.cfg(), cognitively_normal=True, clinical_dir=tmp_path)


def test_bids_table_modality_and_unknown_option(tmp_path):
    root = tmp_path / "b"
    root.mkdir()
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [30, 40], "sex": ["F", "M"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    pd.DataFrame({"participant_id": ["01", "02"], "age": [30, 40], "lh_thick": [2.5, float("nan")],
                  "rh_vol": [1000, 1100]}).to_csv(tmp_path / "fs.tsv", sep="\t", index=False)
    c = prepare_cohort("bids", root, tmp_path / "out", fx.cfg(modalities=["table"]), progress=False,
                       table=tmp_path / "fs.tsv")
    assert c.table_columns == ["lh_thick", "rh_vol"]             # age is never a feature
    assert c.tables.tolist() == [[2.5, 1000.0]]
    assert c.qc.set_index("participant_id").loc["sub-02", "reason"].startswith("unreadable table")
    with pytest.raises(ValueError, match="source bids"):
        scan_source("bids", root, None, fx.cfg(), no_such_option=1)


def test_a_bids_dataset_with_xcpd_time_series_only_is_an_fmri_source(tmp_path):
    root = fx.build_xcpd_cohort(tmp_path / "b", 3)
    tsv = (root / "derivatives/xcp_d/sub-0002/func" /
           "sub-0002_task-rest_space-MNI152NLin2009cAsym_seg-dosenbach160_stat-mean_timeseries.tsv")
    assert tsv.is_file() and not list(root.rglob("*.nii*"))
    scan = scan_source("bids", root, None, fx.cfg())
    assert scan.modalities == frozenset({"fmri"}) and "T1 not offered" in scan.notes[0]
    c = prepare_cohort("bids", root, tmp_path / "out", fx.cfg(), progress=False)   # modalities not given
    assert c.n == 3 and c.modalities == frozenset({"fmri"}) and c.manifest["modalities"] == ["fmri"]
    with pytest.raises(ValueError, match=r"source bids cannot provide \['smri'\] \(it offers \['fmri'\]"):
        prepare_cohort("bids", root, tmp_path / "t1", fx.cfg(modalities=["smri"]), progress=False)
    fx.fmriprep_anat(root / "derivatives", "sub-0001")       # one T1 anywhere: T1 is offered again
    assert scan_source("bids", root, None, fx.cfg()).modalities == frozenset({"fmri", "smri"})


def test_participant_glob_matches_pathlib(tmp_path):
    from amage_core.data.sources.derivatives import _glob

    names = ["sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", "sub-01_T1w.nii",
             "SUB-01_T1w.nii", "sub-010_T1w.nii.gz", "sub-01_run-2_T1w.nii.gz", ".sub-01_T1w.nii", "sub-02_T1w.nii"]
    for name in names:
        (tmp_path / name).touch()
    (tmp_path / "sub-01_dir_T1w.nii").mkdir()
    for pattern in ["sub-01*_T1w.nii*", "sub-01*_space-MNI152NLin2009cAsym*_desc-preproc_bold.nii*", "sub-03*"]:
        assert _glob(tmp_path, pattern) == sorted(tmp_path.glob(pattern)), pattern
    assert _glob(tmp_path / "absent", "sub-01*") == []
