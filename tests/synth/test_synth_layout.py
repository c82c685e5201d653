"""The files a BIDS / fMRIPrep / XCP-D reader expects, with the right shapes, spaces and columns."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from amage_core.data.atlas import load_atlas
from amage_core.synth.anatomy import load_template

SPACE = "space-MNI152NLin2009cAsym"


def test_participants_table(tiny_cohort, tiny_cfg):
    text = (tiny_cohort / "participants.tsv").read_text().splitlines()
    assert text[0].split("\t") == ["participant_id", "age", "sex"]
    rows = [line.split("\t") for line in text[1:]]
    assert [r[0] for r in rows] == [f"sub-{i:04d}" for i in range(1, tiny_cfg.n_subjects + 1)]
    assert all(len(r[1].split(".")[1]) == 1 for r in rows)          # one decimal
    assert {r[2] for r in rows} == {"M", "F"}
    ages = np.array([float(r[1]) for r in rows])
    assert ages.min() >= 18 and ages.max() <= 89


def test_dataset_descriptions(tiny_cohort):
    raw = json.loads((tiny_cohort / "dataset_description.json").read_text())
    assert raw["DatasetType"] == "raw" and "BIDSVersion" in raw
    for pipeline in ("fmriprep", "xcp_d"):
        desc = json.loads((tiny_cohort / "derivatives" / pipeline / "dataset_description.json").read_text())
        assert desc["DatasetType"] == "derivative"


def test_exact_file_names(tiny_cohort, tiny_cfg):
    ids = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")["participant_id"]
    n_bold = 0
    for pid in ids:
        anat = tiny_cohort / "derivatives" / "fmriprep" / pid / "anat"
        func = tiny_cohort / "derivatives" / "fmriprep" / pid / "func"
        xcpd = tiny_cohort / "derivatives" / "xcp_d" / pid / "func"
        assert (anat / f"{pid}_{SPACE}_desc-preproc_T1w.nii.gz").is_file()
        assert (anat / f"{pid}_{SPACE}_desc-brain_mask.nii.gz").is_file()
        assert (func / f"{pid}_task-rest_desc-confounds_timeseries.tsv").is_file()
        assert (xcpd / f"{pid}_task-rest_{SPACE}_seg-Dosenbach160_stat-mean_timeseries.tsv").is_file()
        assert (xcpd / f"{pid}_task-rest_{SPACE}_seg-Seitzman300_stat-mean_timeseries.tsv").is_file()
        n_bold += (func / f"{pid}_task-rest_{SPACE}_desc-preproc_bold.nii.gz").is_file()
    assert n_bold == tiny_cfg.n_bold_nifti


def test_nifti_space_and_shapes(tiny_cohort, tiny_cfg):
    ref = load_template("mask", tiny_cfg.voxel_size)
    for path in sorted((tiny_cohort / "derivatives" / "fmriprep").glob("sub-000[1-3]/anat/*.nii.gz")):
        img = nib.load(path)
        assert img.shape == ref.shape, path
        np.testing.assert_allclose(img.affine, ref.affine)
        assert int(img.header["sform_code"]) == 4
    mask = nib.load(next(tiny_cohort.glob("derivatives/fmriprep/sub-0001/anat/*brain_mask.nii.gz")))
    assert set(np.unique(np.asarray(mask.dataobj))) == {0, 1}
    for bold in (tiny_cohort / "derivatives" / "fmriprep").glob("*/func/*_bold.nii.gz"):
        img = nib.load(bold)
        assert img.ndim == 4 and img.shape[3] == tiny_cfg.n_volumes
        assert img.header.get_zooms()[3] == pytest.approx(1.97)
        np.testing.assert_allclose(img.affine, load_template("mask", tiny_cfg.bold_voxel_size).affine)
        sidecar = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["RepetitionTime"] == pytest.approx(1.97)


@pytest.mark.parametrize("atlas_name,label", [("dosenbach160", "Dosenbach160"), ("seitzman300", "Seitzman300")])
def test_timeseries_columns_are_atlas_regions(tiny_cohort, tiny_cfg, atlas_name, label):
    atlas = load_atlas(atlas_name)
    path = next(tiny_cohort.glob(f"derivatives/xcp_d/sub-0002/func/*seg-{label}_stat-mean_timeseries.tsv"))
    ts = pd.read_csv(path, sep="\t")
    assert list(ts.columns) == list(atlas.regions["name"])
    assert ts.shape == (tiny_cfg.n_volumes, atlas.n_regions)
    assert np.isfinite(ts.to_numpy()).all() and (ts.std() > 0).all()


def test_confounds_columns(tiny_cohort, tiny_cfg):
    path = next(tiny_cohort.glob("derivatives/fmriprep/sub-0005/func/*confounds_timeseries.tsv"))
    text = path.read_text().splitlines()
    conf = pd.read_csv(path, sep="\t", na_values="n/a")
    required = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "framewise_displacement",
                "dvars", "std_dvars", "csf", "white_matter", "global_signal", "cosine00",
                "trans_x_derivative1", "rot_z_derivative1_power2", "csf_power2"]
    assert set(required) <= set(conf.columns)
    assert len(conf) == tiny_cfg.n_volumes
    fd_col = conf.columns.get_loc("framewise_displacement")
    assert text[1].split("\t")[fd_col] == "n/a"                       # fMRIPrep's first row
    assert conf["framewise_displacement"].iloc[1:].notna().all() and (conf["framewise_displacement"].iloc[1:] >= 0).all()


def test_nilearn_reads_confounds(tiny_cohort, tiny_cfg):
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    bolds = sorted(tiny_cohort.glob("derivatives/fmriprep/*/func/*_desc-preproc_bold.nii.gz"))
    confounds, sample_mask = load_confounds_strategy([str(b) for b in bolds], denoise_strategy="simple")
    for conf in confounds:
        assert len(conf) == tiny_cfg.n_volumes and not conf.isna().any().any()
        assert {"trans_x", "trans_x_derivative1_power2", "csf", "white_matter", "cosine00"} <= set(conf.columns)
