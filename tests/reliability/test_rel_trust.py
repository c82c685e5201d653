"""Data in that can be trusted (issue 19): XCP-D's own atlases, participant IDs that never become
paths, a run that includes nobody fails, the cohort's identity covers its input files, motion QC that
says when it did not run, T1s in the wrong space, and the smaller points (FIFO, lock, YAML numbers,
one-line reasons, where each participant's connectivity came from)."""
from __future__ import annotations

import contextlib
import io as _io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prep_fixtures as pf
from amage_core.cli import main
from amage_core.data import qc
from amage_core.data.cohort import load_cohort
from amage_core.data.prepare import prepare_cohort

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    err, out = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:                       # argparse usage errors
            code = exc.code
    return code, err.getvalue(), out.getvalue()


def assert_one_error_line(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("amage prep: error:"), err
    for needle in needles:
        assert needle in last, last
    return last


def reference_fc(ts: np.ndarray) -> np.ndarray:
    r = np.corrcoef(ts, rowvar=False)
    z = np.arctanh(np.clip(r, -(1 - 1e-6), 1 - 1e-6))
    np.fill_diagonal(z, 0.0)
    return z


def xcpd_motion(deriv: Path, sub: str, n_vol: int, fd: float = 0.1, ses: str = "") -> Path:
    """XCP-D's ``_motion.tsv`` (the six parameters and framewise_displacement)."""
    folder = deriv / "xcp_d" / sub / ses / "func"
    folder.mkdir(parents=True, exist_ok=True)
    cols = {c: np.zeros(n_vol) for c in pf.MOTION}
    cols["framewise_displacement"] = np.r_[np.nan, np.full(n_vol - 1, fd)]
    path = folder / f"{sub}{'_' + ses if ses else ''}_task-rest_motion.tsv"
    pd.DataFrame(cols).to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


# --------------------------------------------------------------------------------------------
# 1. XCP-D's own atlases (its default 4S156Parcels), Cam-CAN and OASIS-3 layouts
# --------------------------------------------------------------------------------------------
def _camcan_xcpd(root: Path, n: int = 4, layout: str = "atlases"):
    rel = root / "cc700/mri/pipeline/release004"
    deriv = root / "derivatives"
    labels, nets, centres = pf.xcpd_atlas(deriv, "4S156Parcels", layout=layout)
    subs = [f"sub-CC1100{30 + i}" for i in range(n)]
    series = {}
    for i, sub in enumerate(subs):
        pf.write_t1(rel / "BIDSsep" / "anat" / sub / "anat" / f"{sub}_T1w.nii.gz", i)
        ts = pf.series(40, len(labels), i)
        series[sub] = ts
        pf.write_timeseries_tsv(deriv / "xcp_d" / sub / "func" /
                                f"{sub}_task-rest_space-MNI152NLin6Asym_seg-4S156Parcels_stat-mean_timeseries.tsv",
                                ts, labels)
        pf.write_timeseries_tsv(deriv / "xcp_d" / sub / "func" /
                                f"{sub}_task-rest_space-MNI152NLin6Asym_seg-Gordon_stat-mean_timeseries.tsv",
                                ts[:, :5], labels[:5])
        xcpd_motion(deriv, sub, 40)
    (root / "cc700-scored").mkdir(parents=True)
    pd.DataFrame({"Observations": [s[4:] for s in subs], "age": [20 + 10 * i for i in range(n)], "hand": 1,
                  "gender_text": "", "gender_code": [1 + i % 2 for i in range(n)]}).to_csv(
        root / "cc700-scored" / "participant_data.csv", index=False)
    return rel, deriv, subs, labels, nets, centres, series


@pytest.mark.parametrize("layout", ["atlases", "sourcedata"])
def test_camcan_with_xcpd_default_atlas_names_the_choice_then_prepares_everyone(tmp_path, layout):
    rel, deriv, subs, labels, nets, centres, series = _camcan_xcpd(tmp_path, layout=layout)
    base = ["prep", "--dataset", "camcan", "--root", rel, "--derivatives", deriv, "--quiet",
            "--set", "min_volumes=30", "--set", "t1_shape=[12,14,12]", "--set", "t1_source=resize"]
    # the default atlas (dosenbach160): one line listing the atlases found and how to choose
    code, err, _ = run_cli([*base, "--out", tmp_path / "default"])
    assert_one_error_line(code, err, "4S156Parcels (4)", "Gordon (4)", "--atlas", "dosenbach160")
    # choosing XCP-D's atlas: every participant, regions from XCP-D's own atlas files
    code, err, out = run_cli([*base, "--out", tmp_path / "4s", "--atlas", "4S156Parcels"])
    assert code == 0, err
    c = load_cohort(tmp_path / "4s")
    assert c.participants["participant_id"].tolist() == subs
    assert c.regions["name"].tolist() == labels and c.regions["network"].tolist() == nets
    np.testing.assert_allclose(c.regions[["x", "y", "z"]].to_numpy(float), centres, atol=1e-6)
    for k, sub in enumerate(subs):
        np.testing.assert_allclose(c.connectivity[k], reference_fc(series[sub]), rtol=1e-4, atol=1e-5)
    assert c.manifest["atlas"]["name"] == "4S156Parcels" and c.manifest["atlas"]["kind"] == "labels"
    assert (c.qc["motion_qc"] == "checked").all() and (c.qc["fmri_input"] == "xcpd").all()
    assert c.t1.shape == (4, 12, 14, 12)


def test_oasis3_with_xcpd_atlases_in_the_older_naming(tmp_path):
    deriv = tmp_path / "derivatives"
    labels, nets, centres = pf.xcpd_atlas(deriv, "4S156Parcels")
    subs = ["sub-OAS30001", "sub-OAS30002", "sub-OAS30003"]
    for i, sub in enumerate(subs):
        ses = f"ses-d00{10 * (i + 1)}"
        pf.write_t1(tmp_path / sub / ses / "anat" / f"{sub}_{ses}_run-01_T1w.nii.gz", i)
        folder = deriv / "xcp_d" / sub / ses / "func"
        pf.write_timeseries_tsv(folder / f"{sub}_{ses}_task-rest_run-01_space-MNI152NLin6Asym_atlas-4S156Parcels_timeseries.tsv",
                                pf.series(40, len(labels), i), labels)
        xcpd_motion(deriv, sub, 40, ses=ses)
    (tmp_path / "OASIS3_demographics.csv").write_text(
        "OASISID,AgeatEntry,GENDER\nOAS30001,65,2\nOAS30002,70,1\nOAS30003,71,1\n")
    base = ["prep", "--dataset", "oasis3", "--root", tmp_path, "--quiet", "--modalities", "fmri",
            "--set", "min_volumes=30"]
    code, err, _ = run_cli([*base, "--out", tmp_path / "o1"])
    assert_one_error_line(code, err, "4S156Parcels (3)", "--atlas")
    code, err, _ = run_cli([*base, "--out", tmp_path / "o2", "--atlas", "4s156parcels"])
    assert code == 0, err
    c = load_cohort(tmp_path / "o2")
    assert c.participants["participant_id"].tolist() == subs and c.connectivity.shape == (3, 12, 12)
    assert c.regions["name"].tolist() == labels


def test_an_xcpd_atlas_without_networks_or_image_trains_with_learned_networks(tmp_path, profile_path):
    """A CIFTI-only atlas (label table, no volumetric image, no network labels): regions without
    coordinates or networks, and the GAT pools them into ``n_learned_networks`` groups."""
    from amage_core.train.dataset import input_spec

    root = tmp_path / "bids"
    deriv = root / "derivatives"
    labels, _, _ = pf.xcpd_atlas(deriv, "Glasser", n_regions=10, networks=False, image=False)
    subs = [f"sub-{i:02d}" for i in range(1, 9)]
    pf.write_bids_root(root, pd.DataFrame({"participant_id": subs, "age": [20 + 7 * i for i in range(8)],
                                           "sex": ["M", "F"] * 4}))
    for i, sub in enumerate(subs):
        pf.xcpd_tsv(deriv, sub, "Glasser", pf.series(40, 10, i), labels)
    out = tmp_path / "cohort"
    c = prepare_cohort("bids", root, out, pf.cfg(atlas="Glasser"), progress=False)
    assert c.n == 8 and (c.regions["network"] == "none").all() and c.regions[["x", "y", "z"]].isna().all().all()
    assert input_spec(c).network_index is None
    # motion: no confounds at all -> kept, and the check is said not to have run
    assert c.qc["motion_qc"].str.startswith("not run").all()
    code, err, _ = run_cli(["train", "--data", out, "--model", "fmri", "--profile", profile_path,
                            "--out", tmp_path / "run", "--quiet", "--epochs", "1"])
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "run" / "predictions.tsv", sep="\t")
    assert len(pred) == 8 and np.isfinite(pred["predicted_age"]).all()


def test_an_unknown_atlas_lists_the_xcpd_atlases_there(tmp_path):
    root = tmp_path / "bids"
    deriv = root / "derivatives"
    labels, _, _ = pf.xcpd_atlas(deriv, "4S156Parcels")
    pf.write_bids_root(root, pd.DataFrame({"participant_id": ["sub-01"], "age": [30], "sex": ["M"]}))
    pf.xcpd_tsv(deriv, "sub-01", "4S156Parcels", pf.series(40, 12, 0), labels)
    code, err, _ = run_cli(["prep", "--dataset", "bids", "--root", root, "--out", tmp_path / "o", "--quiet",
                            "--atlas", "4S456Parcels"])
    assert_one_error_line(code, err, "unknown atlas '4S456Parcels'", "['4S156Parcels']")


# --------------------------------------------------------------------------------------------
# 2. participant_id: never a path, never a phantom
# --------------------------------------------------------------------------------------------
ID_CHARS = st.sampled_from(list("ab01") + ["/", "..", "../", "\\", " ", "*", "?", "[", "]", "é", "-", "_", ".",
                                           "\t", "\n", "~", "$", "%", "sub-0001"])
IDS = st.one_of(
    st.lists(ID_CHARS, min_size=0, max_size=8).map("".join),
    st.sampled_from(["sub-0002/../sub-0001", "../../escaped", "sub-0001/", "./sub-0001", "NA", "nan", "N/A",
                     "sub-NA", "0001", "sub-0001 ", "sub-000١", "/tmp/abs", "sub-0003"]),
    st.integers(90, 300).map(lambda n: "sub-" + "x" * n),
)


@pytest.fixture(scope="module")
def id_source(tmp_path_factory):
    """sub-0001 and sub-0003 with XCP-D series (their data must never appear under another ID)."""
    root = tmp_path_factory.mktemp("ids") / "ds"
    names = pf.dosenbach_names()
    for i, sub in enumerate(["sub-0001", "sub-0003"]):
        pf.xcpd_tsv(root / "derivatives", sub, "dosenbach160", pf.series(40, 160, i), names)
    return root


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@SETTINGS
@given(weird=IDS)
def test_participant_ids_never_become_paths_or_phantoms(tmp_path_factory, id_source, weird):
    work = tmp_path_factory.mktemp("w")
    pd.DataFrame({"participant_id": ["sub-0001", weird], "age": [30, 40], "sex": ["M", "F"]}).to_csv(
        id_source / "participants.tsv", sep="\t", index=False)
    before = _tree(id_source)
    listed = pd.read_csv(id_source / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    as_read = listed["participant_id"].iloc[1].strip()
    want = as_read if as_read.startswith("sub-") else f"sub-{as_read}"
    out = work / "deep" / "out"
    if want == "sub-0001":               # a duplicate of the first: both excluded, nobody left
        with pytest.raises(ValueError, match="no participant included"):
            prepare_cohort("bids", id_source, out, pf.cfg(modalities=["fmri"]), progress=False)
        return
    cohort = prepare_cohort("bids", id_source, out, pf.cfg(modalities=["fmri"]), progress=False)
    assert _tree(id_source) - before == set()                    # nothing written beside the source
    assert {p.name for p in work.iterdir()} == {"deep"} and {p.name for p in (work / "deep").iterdir()} == {"out"}
    ids = cohort.qc["participant_id"].astype(str).tolist()
    reasons = cohort.qc["reason"].fillna("").astype(str).tolist()
    included = cohort.participants["participant_id"].astype(str).tolist()
    valid = want[4:].isascii() and want[4:].isalnum() and len(want) <= 104
    if not valid:
        assert qc.category(reasons[1]) == qc.INVALID_ID, reasons
        assert included == ["sub-0001"]
    elif want == "sub-0003":                                     # a real participant: its own data
        assert included == ["sub-0001", "sub-0003"]
    else:                                                        # a valid label without files
        assert included == ["sub-0001"] and qc.category(reasons[1]) == qc.MISSING_MODALITY, (ids, reasons)
    # each included participant has its own connectivity (no phantom copy of sub-0001's)
    for k, pid in enumerate(included):
        ts = pf.series(40, 160, 0 if pid == "sub-0001" else 1)
        np.testing.assert_allclose(cohort.connectivity[k], reference_fc(ts), rtol=1e-4, atol=1e-5)
    assert all("\n" not in r and "\t" not in r for r in reasons)


def test_a_duplicate_of_the_only_good_participant_leaves_nobody_and_fails(tmp_path, id_source):
    pd.DataFrame({"participant_id": ["sub-0001", "0001"], "age": [30, 40], "sex": ["M", "F"]}).to_csv(
        id_source / "participants.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"no participant included \(3 excluded: 2 duplicate participant ID; 1 missing age; e.g. sub-0001: duplicate"):
        prepare_cohort("bids", id_source, tmp_path / "o", pf.cfg(modalities=["fmri"]), progress=False)


def test_na_is_a_label_and_a_trailing_tab_shifts_nothing(tmp_path):
    root = tmp_path / "ds"
    names = pf.dosenbach_names()
    subs = ["sub-NA", "sub-02", "sub-03"]
    for i, sub in enumerate(subs):
        pf.xcpd_tsv(root / "derivatives", sub, "dosenbach160", pf.series(40, 160, i), names)
    (root / "participants.tsv").write_text(
        "participant_id\tage\tsex\nNA\t36.0\tM\t\nsub-02\t41.5\tF\t\nsub-03\t50\tF\t\n")
    c = prepare_cohort("bids", root, tmp_path / "o", pf.cfg(), progress=False)
    assert c.participants["participant_id"].tolist() == subs
    assert c.participants["age"].tolist() == [36.0, 41.5, 50.0]
    assert c.participants["sex"].tolist() == ["M", "F", "F"]


# --------------------------------------------------------------------------------------------
# 6. nobody included, or a configuration every participant fails: exit 2, one line
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_bids(tmp_path_factory):
    """4 participants: fMRIPrep T1 + mask, XCP-D series, fMRIPrep confounds (FD 0.1)."""
    root = tmp_path_factory.mktemp("small") / "ds"
    names = pf.dosenbach_names()
    subs = [f"sub-{i:02d}" for i in range(1, 5)]
    pf.write_bids_root(root, pd.DataFrame({"participant_id": subs, "age": [20, 35, 50, 65], "sex": ["M", "F"] * 2}))
    for i, sub in enumerate(subs):
        pf.fmriprep_anat(root / "derivatives", sub, seed=i)
        pf.xcpd_tsv(root / "derivatives", sub, "dosenbach160", pf.series(40, 160, i), names)
        pf.fmriprep_confounds(root / "derivatives", sub, 40, 0.1)
    return root


def _prep_args(root: Path, out: Path, *extra) -> list:
    return ["prep", "--dataset", "bids", "--root", root, "--out", out, "--quiet", "--set", "min_volumes=30",
            "--set", "t1_shape=[12,14,12]", *extra]


@pytest.mark.parametrize("extra, needles", [
    (["--set", "t1_shape=[0,0,0]"], ["PrepConfig.t1_shape", "at least 4 voxels"]),
    (["--set", "t1_shape=[12,14,12]", "--set", "t1_crop_margin=7"], ["PrepConfig.t1_crop_margin"]),
    (["--set", "fd_threshold=.nan"], ["PrepConfig.fd_threshold", ">= 0"]),
    (["--set", "fd_threshold=-1"], ["PrepConfig.fd_threshold"]),
    (["--set", "t1_percentiles=[99,1]"], ["PrepConfig.t1_percentiles"]),
    (["--set", "min_age=80", "--set", "max_age=20"], ["PrepConfig.min_age"]),
    (["--set", "min_volumes=500"], ["no participant included (4 excluded: 4 too few volumes", "qc.tsv"]),
    (["--set", "min_age=90"], ["no participant included (4 excluded: 4 implausible age"]),
], ids=["t1_shape 0", "margin", "fd nan", "fd negative", "percentiles", "ages", "min_volumes", "min_age"])
def test_a_run_that_includes_nobody_or_cannot_run_exits_2_with_one_line(tmp_path, small_bids, extra, needles):
    code, err, _ = run_cli(_prep_args(small_bids, tmp_path / "o", *extra))
    assert_one_error_line(code, err, *needles)
    if "no participant included" in needles[0]:             # and the same again: not "up to date"
        code, err, _ = run_cli(_prep_args(small_bids, tmp_path / "o", *extra))
        assert_one_error_line(code, err, *needles)


def test_an_atlas_table_with_a_nan_coordinate_is_refused_naming_it(tmp_path, small_bids):
    from amage_core.data.atlas import load_atlas

    regions = load_atlas("dosenbach160").regions.copy()
    regions.loc[5, "y"] = np.nan
    path = tmp_path / "my_atlas.tsv"
    regions.to_csv(path, sep="\t", index=False)
    code, err, _ = run_cli(_prep_args(small_bids, tmp_path / "o", "--atlas", path))
    assert_one_error_line(code, err, str(path), "1 region(s) without finite x, y, z", regions.loc[5, "name"])


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(side=st.integers(-2, 14), margin=st.integers(-1, 8), fd=st.sampled_from([np.nan, -0.5, 0.0, 0.05, 0.5, np.inf]),
       lo=st.sampled_from([-5.0, 0.0, 1.0, 50.0, 99.0]), hi=st.sampled_from([1.0, 99.0, 100.0, 120.0]),
       min_volumes=st.sampled_from([0, 2, 3, 30, 41]))
def test_prep_settings_either_refused_or_a_cohort_with_someone(tmp_path_factory, small_bids, side, margin, fd, lo,
                                                               hi, min_volumes):
    """Any combination of the settings that every participant shares: a one-line refusal naming the
    setting, or a cohort of at least one participant; never an empty cohort and never a crash."""
    cfg = pf.cfg(t1_shape=(side, side + 2, side), t1_crop_margin=margin, fd_threshold=fd,
                 t1_percentiles=(lo, hi), min_volumes=min_volumes)
    out = tmp_path_factory.mktemp("p") / "o"
    try:
        c = prepare_cohort("bids", small_bids, out, cfg, progress=False)
    except qc.QCError:                                      # pragma: no cover - strict is off
        raise
    except ValueError as exc:
        text = str(exc)
        assert "\n" not in text
        assert "PrepConfig." in text or "no participant included" in text, text
        return
    assert c.n >= 1 and np.isfinite(np.asarray(c.t1)).all() and np.isfinite(np.asarray(c.connectivity)).all()
    assert side >= 4 and 0 <= margin and 2 * margin < side - 1 and 0 <= lo < hi <= 100 and fd >= 0


def test_a_row_with_more_fields_than_the_header_is_refused_naming_the_line(tmp_path):
    from amage_core.data.sources import bids

    (tmp_path / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t30\tM\t\nsub-02\t40\tF\t41\n")
    with pytest.raises(ValueError, match=r"participants\.tsv: line 3 has more fields than the header's 3"):
        bids.scan(tmp_path, None, pf.cfg())


# --------------------------------------------------------------------------------------------
# 3. the cohort's identity covers its input files
# --------------------------------------------------------------------------------------------
def test_editing_an_input_prepares_the_cohort_again(tmp_path, small_bids, caplog):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(small_bids, root)
    out = tmp_path / "o"
    cfg = pf.cfg()
    first = prepare_cohort("bids", root, out, cfg, progress=False)
    assert first.participants["age"].tolist() == [20.0, 35.0, 50.0, 65.0]
    caplog.set_level(logging.INFO, logger="amage_core.data.prepare")
    caplog.clear()
    again = prepare_cohort("bids", root, out, cfg, progress=True)
    assert "up to date (4 participants)" in caplog.text and again.n == 4
    # an edited age
    tsv = root / "participants.tsv"
    tsv.write_text(tsv.read_text().replace("35", "36"))
    caplog.clear()
    c = prepare_cohort("bids", root, out, cfg, progress=True)
    assert "inputs changed" in caplog.text
    assert c.participants["age"].tolist() == [20.0, 36.0, 50.0, 65.0]
    # a T1 replaced by a constant image, a time series deleted
    t1 = next((root / "derivatives/fmriprep/sub-03/anat").glob("*_desc-preproc_T1w.nii.gz"))
    img = __import__("nibabel").load(t1)
    __import__("nibabel").save(__import__("nibabel").Nifti1Image(np.ones(img.shape, np.float32), img.affine), t1)
    next((root / "derivatives/xcp_d/sub-04/func").glob("*_timeseries.tsv")).unlink()
    c = prepare_cohort("bids", root, out, cfg, progress=False)
    reasons = dict(zip(c.qc["participant_id"], c.qc["reason"].fillna("")))
    assert c.participants["participant_id"].tolist() == ["sub-01", "sub-02"]
    assert qc.category(reasons["sub-03"]) == qc.EMPTY_IMAGE and qc.category(reasons["sub-04"]) == qc.MISSING_MODALITY


def test_a_resumed_run_redoes_a_participant_whose_input_changed(tmp_path, small_bids, monkeypatch):
    import shutil

    from amage_core.data import prepare as prep

    root = tmp_path / "ds"
    shutil.copytree(small_bids, root)
    out = tmp_path / "o"
    real, calls = prep.prepare_participant, []

    def interrupted(record, *args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(record.participant_id)
        return real(record, *args, **kwargs)

    monkeypatch.setattr(prep, "prepare_participant", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_cohort("bids", root, out, pf.cfg(), progress=False)
    monkeypatch.setattr(prep, "prepare_participant", real)
    names = pf.dosenbach_names()
    pf.xcpd_tsv(root / "derivatives", "sub-01", "dosenbach160", pf.series(40, 160, 99), names)
    c = prepare_cohort("bids", root, out, pf.cfg(), progress=False)
    np.testing.assert_allclose(c.connectivity[0], reference_fc(pf.series(40, 160, 99)), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# 5. motion QC: refused when it cannot be checked, said when it did not run
# --------------------------------------------------------------------------------------------
FD_CELLS = st.sampled_from(["n/a", "", "0.1", "0", "1e-1", " 0.2 ", "0.45", "2.0mm", "-0.3", "inf", "NaN", "abc"])


@SETTINGS
@given(cells=st.lists(FD_CELLS, min_size=40, max_size=40), extra_rows=st.sampled_from([-10, -1, 0, 0, 5]))
def test_framewise_displacement_is_checked_or_the_participant_excluded(tmp_path_factory, cells, extra_rows):
    from amage_core.data.atlas import load_atlas
    from amage_core.data.fmri import participant_fmri
    from amage_core.data.sources.base import ParticipantRecord

    folder = tmp_path_factory.mktemp("fd")
    names = pf.dosenbach_names()
    ts_path = pf.write_timeseries_tsv(folder / "sub-X_task-rest_seg-dosenbach160_stat-mean_timeseries.tsv",
                                      pf.series(40, 160, 0), names)
    n_rows = 40 + extra_rows
    cells = (cells + ["0.1"] * 10)[:n_rows]
    conf = folder / "sub-X_task-rest_desc-confounds_timeseries.tsv"
    conf.write_text("trans_x\tframewise_displacement\n" + "".join(f"0\t{c}\n" for c in cells))
    record = ParticipantRecord("sub-X", 30.0, "F", "c", timeseries=ts_path, confounds=conf)
    parsed = []
    for c in cells:
        t = c.strip()
        if t.lower() in ("", "n/a", "nan"):
            parsed.append(np.nan)
            continue
        try:
            parsed.append(float(t))
        except ValueError:
            parsed.append(None)
    try:
        res = participant_fmri(record, load_atlas("dosenbach160"), pf.cfg(fd_threshold=10.0))
    except qc.QCError as exc:
        assert exc.file == str(conf) and "sub-X" in str(exc)
        cat = qc.category(exc.reason)
        values = [v for v in parsed if v is not None and not np.isnan(v)]
        assert (None in parsed or any(v < 0 or np.isinf(v) for v in values) or not values
                or n_rows < 40), (cells, exc.reason)
        assert cat in (qc.UNREADABLE_TABLE, qc.MISMATCHED_LENGTH), exc.reason
        return
    assert n_rows >= 40 and None not in parsed
    finite = np.array([v for v in parsed if not np.isnan(v)])
    assert finite.size and (finite >= 0).all() and np.isfinite(finite).all()
    assert res.mean_fd == pytest.approx(finite.mean()) and res.motion_qc == "checked"


def test_no_confounds_keeps_the_participant_and_says_motion_was_not_checked(tmp_path, caplog):
    root = pf.build_xcpd_cohort(tmp_path / "ds", 3, n_vol=40)
    with caplog.at_level(logging.INFO, logger="amage_core.data.prepare"):
        c = prepare_cohort("bids", root, tmp_path / "o", pf.cfg(), progress=True)
    err = caplog.text
    assert c.n == 3 and c.qc["motion_qc"].str.startswith("not run: no fMRIPrep confounds").all()
    assert "motion QC not run for 3 included participant(s)" in err
    assert c.manifest["qc"]["motion_not_checked"] == 3


def test_regions_with_identical_series_are_an_exclusion(tmp_path):
    from amage_core.data.atlas import load_atlas
    from amage_core.data.fmri import participant_fmri
    from amage_core.data.sources.base import ParticipantRecord

    names = pf.dosenbach_names()
    ts = pf.series(40, 160, 0)
    for case, data in (("all identical", np.repeat(ts[:, :1], 160, axis=1)), ("two identical", ts.copy())):
        if case == "two identical":
            data[:, 7] = data[:, 3]
        path = pf.write_timeseries_tsv(tmp_path / case.replace(" ", "_") / "sub-X_seg-dosenbach160_timeseries.tsv",
                                       data, names)
        with pytest.raises(qc.QCError, match="identical time series") as exc:
            participant_fmri(ParticipantRecord("sub-X", 30.0, "F", "c", timeseries=path),
                             load_atlas("dosenbach160"), pf.cfg())
        assert exc.value.file == str(path) and qc.category(exc.value.reason) == qc.SINGULAR


# --------------------------------------------------------------------------------------------
# 7. smaller: FIFO, a second preparation into the same folder, one-line reasons, provenance
# --------------------------------------------------------------------------------------------
def test_a_fifo_in_place_of_a_time_series_is_an_exclusion_not_a_hang(tmp_path):
    import signal

    root = pf.build_xcpd_cohort(tmp_path / "ds", 2, n_vol=40)
    tsv = next((root / "derivatives/xcp_d/sub-0002/func").glob("*_timeseries.tsv"))
    tsv.unlink()
    os.mkfifo(tsv)
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("preparation hangs on a FIFO")))
    signal.alarm(60)
    try:
        c = prepare_cohort("bids", root, tmp_path / "o", pf.cfg(), progress=False)
    finally:
        signal.alarm(0)
    reason = c.qc.set_index("participant_id").loc["sub-0002", "reason"]
    assert c.n == 1 and reason == f"{qc.UNREADABLE_TABLE}: not a regular file (a FIFO, device or folder)"


def test_a_second_preparation_into_the_same_folder_is_refused(tmp_path, small_bids):
    import fcntl

    out = tmp_path / "o"
    out.mkdir()
    with open(out / ".prep.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, err, _ = run_cli(_prep_args(small_bids, out))
        assert_one_error_line(code, err, "another preparation is writing here")
    code, err, _ = run_cli(_prep_args(small_bids, out))            # released: it runs
    assert code == 0, err


def test_reasons_are_one_line():
    exc = qc.QCError("sub-1", "f.nii", "registration failed: ITK says\n  line two\r\n\tline three")
    assert exc.reason == "registration failed: ITK says line two line three"


def test_each_participants_connectivity_source_is_recorded(tmp_path):
    c = prepare_cohort("bids", pf.build_bids(tmp_path / "bids"), tmp_path / "o", pf.cfg(), progress=False)
    q = c.qc.set_index("participant_id")
    assert q.loc["sub-06", "fmri_input"] == "bold" and q.loc["sub-06", "fmri_file"].endswith("_desc-preproc_bold.nii.gz")
    assert (q.loc[["sub-01", "sub-02", "sub-03", "sub-04", "sub-05"], "fmri_input"] == "xcpd").all()
    assert c.manifest["qc"]["n_included"] == 6


# --------------------------------------------------------------------------------------------
# 7. YAML: numbers as YAML 1.2 reads them, duplicate keys refused
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, lr", [("train: {lr: 1e-3}", 1e-3), ("train: {lr: 5E-4}", 5e-4),
                                      ("train: {lr: 2.5e-4}", 2.5e-4), ("train: {lr: .001}", 1e-3)])
def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path, text, lr):
    from amage_core.config import load_profile

    path = tmp_path / "p.yml"
    path.write_text(text)
    assert load_profile(path).train.lr == pytest.approx(lr)


def test_duplicate_yaml_keys_are_refused_naming_file_and_key(tmp_path):
    from amage_core.config import ConfigError, load_profile

    path = tmp_path / "dup.yml"
    path.write_text("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match=r"dup\.yml: not valid YAML .*duplicate key 'lr'"):
        load_profile(path)


def test_prep_set_reads_exponent_numbers(tmp_path, small_bids):
    code, err, _ = run_cli(_prep_args(small_bids, tmp_path / "o", "--set", "fd_threshold=5e-1"))
    assert code == 0, err
    assert load_cohort(tmp_path / "o").manifest["config"]["fd_threshold"] == 0.5


# --------------------------------------------------------------------------------------------
# 8. the command line
# --------------------------------------------------------------------------------------------
def test_train_help_lists_every_model_variant_and_baseline():
    from amage_core.models import VARIANTS
    from amage_core.train.command import BASELINE_NAMES

    code, err, out = run_cli(["train", "--help"])
    assert code == 0
    text = " ".join(out.split())
    for name in [*VARIANTS, *BASELINE_NAMES]:
        assert f" {name}," in text or f" {name};" in text or f" {name} " in text or text.endswith(name), name
