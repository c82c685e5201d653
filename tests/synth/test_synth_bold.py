"""Voxelwise BOLD: atlas spheres extracted after denoising give back the XCP-D-style signals."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from amage_core.data.atlas import load_atlas
from amage_core.synth import bold, function
from amage_core.synth.presets import PRESETS


def test_spheres_from_bold_match_timeseries(tiny_cohort):
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.maskers import NiftiSpheresMasker
    from nilearn.signal import clean

    atlas = load_atlas("dosenbach160")
    bolds = sorted(tiny_cohort.glob("derivatives/fmriprep/*/func/*_desc-preproc_bold.nii.gz"))
    assert bolds
    for path in bolds:
        pid = path.name.split("_")[0]
        confounds, sample_mask = load_confounds_strategy(str(path), denoise_strategy="simple")
        masker = NiftiSpheresMasker(atlas.coords, radius=atlas.radius_mm, standardize="zscore_sample",
                                    allow_overlap=True)
        extracted = masker.fit_transform(str(path), confounds=confounds, sample_mask=sample_mask)
        tsv = pd.read_csv(next(tiny_cohort.glob(f"derivatives/xcp_d/{pid}/func/*Dosenbach160*.tsv")), sep="\t")
        # the TSV gets the same projection, so that only what differs between the two paths
        # (thermal noise, neighbouring regions inside a sphere) lowers the correlation
        expected = clean(tsv.to_numpy(), confounds=confounds.to_numpy(), standardize="zscore_sample")
        r = np.array([np.corrcoef(extracted[:, i], expected[:, i])[0, 1] for i in range(atlas.n_regions)])
        assert np.median(r) > 0.6, (pid, np.median(r))
        # without denoising the motion/drift/physiological nuisance hides much of the signal
        raw = NiftiSpheresMasker(atlas.coords, radius=atlas.radius_mm, allow_overlap=True,
                                 standardize=None).fit_transform(str(path))
        r_raw = np.array([np.corrcoef(raw[:, i], expected[:, i])[0, 1] for i in range(atlas.n_regions)])
        assert np.median(r) > np.median(r_raw) + 0.1


def test_confound_means_and_dvars_are_exact():
    """The confounds computed from the model's sufficient statistics equal the voxel computation."""
    atlas = load_atlas("dosenbach160")
    model = bold.build_bold_model(8.0, atlas)
    preset = PRESETS["oasis3-like"]
    rng = np.random.default_rng(0)
    fs = function.simulate_function(atlas, function.network_table(atlas), preset, 60, 2.2, 70.0, 70.0, "F", rng)
    nuis = bold.simulate_nuisance(fs, 60, 2.2, rng)
    conf = bold.confounds_table(model, fs, nuis, preset, 2.2)
    y = preset.bold_s0 * model.s0 * (1 + 0.01 * bold.voxel_percent(model, fs, nuis))
    np.testing.assert_allclose(conf["global_signal"], y.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(conf["white_matter"], y[:, model.wm_mask].mean(axis=1), rtol=1e-10)
    dvars = np.sqrt((np.diff(y, axis=0) ** 2).mean(axis=1) + 2 * (preset.bold_noise * preset.bold_s0) ** 2)
    np.testing.assert_allclose(conf["dvars"].iloc[1:], dvars, rtol=1e-8)


def test_global_signal_matches_the_written_image(tiny_cohort):
    path = sorted(tiny_cohort.glob("derivatives/fmriprep/*/func/*_desc-preproc_bold.nii.gz"))[0]
    data = np.asarray(nib.load(path).dataobj, dtype=float)
    inside = data.std(axis=3) > 0
    conf = pd.read_csv(str(path).replace("space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
                                         "desc-confounds_timeseries.tsv"), sep="\t", na_values="n/a")
    assert np.corrcoef(data[inside].mean(axis=0), conf["global_signal"])[0, 1] > 0.95
