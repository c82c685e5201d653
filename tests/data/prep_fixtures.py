"""Builders of small on-disk fixture trees with the exact file names of each source.

Images are tiny (8 mm voxels) and series short, so a whole cohort prepares in seconds.
"""
from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from amage_core.config import PrepConfig

SPACE = "MNI152NLin2009cAsym"
AFFINE = np.array([[8.0, 0, 0, -80], [0, 8.0, 0, -112], [0, 0, 8.0, -72], [0, 0, 0, 1]])
GRID = (21, 25, 21)           # covers the MNI brain at 8 mm
MOTION = [f"{a}_{b}" for a in ("trans", "rot") for b in "xyz"]


def cfg(**kw) -> PrepConfig:
    """Fast test configuration: short series, small T1 grid, serial."""
    base = dict(min_volumes=30, t1_shape=(12, 14, 12), n_jobs=1, atlas="dosenbach160")
    base.update(kw)
    return PrepConfig(**base)


def series(n_vol: int, n_regions: int, seed: int) -> np.ndarray:
    """(T, R) correlated series: a few shared factors plus noise."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n_vol, 3))
    return factors @ rng.standard_normal((3, n_regions)) + rng.standard_normal((n_vol, n_regions))


def write_timeseries_tsv(path: Path, ts: np.ndarray, names: list[str], digits: int | None = None) -> Path:
    """An XCP-D time-series TSV (header = region names, ``n/a`` for NaN). ``digits``: write that many
    significant digits with ``np.savetxt`` (about 4x faster than pandas, for cohorts of thousands;
    NaN is then written ``nan``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if digits is None:
        pd.DataFrame(ts, columns=names).to_csv(path, sep="\t", index=False, na_rep="n/a")
    else:
        np.savetxt(path, ts, fmt=f"%.{digits}g", delimiter="\t", header="\t".join(names), comments="")
    return path


def write_confounds(path: Path, n_vol: int, fd: float, seed: int = 0) -> Path:
    """fMRIPrep confounds with the columns of the ``simple`` strategy and framewise_displacement."""
    rng = np.random.default_rng(seed)
    cols = {}
    for c in MOTION:
        for suf in ("", "_derivative1", "_power2", "_derivative1_power2"):
            cols[c + suf] = rng.standard_normal(n_vol) * 0.01
    for c in ("csf", "white_matter", "global_signal"):
        cols[c] = rng.standard_normal(n_vol)
    cols["framewise_displacement"] = np.r_[np.nan, np.full(n_vol - 1, fd)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cols).to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


@functools.lru_cache(maxsize=1)
def _mni() -> tuple[np.ndarray, np.ndarray]:
    """nilearn's MNI152 template (0-1) and its brain mask on the fixture grid (8 mm)."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    from nilearn.image import resample_img

    kw = dict(target_affine=AFFINE, target_shape=GRID, force_resample=True, copy_header=True)
    template = resample_img(load_mni152_template(resolution=2), interpolation="continuous", **kw)
    mask = resample_img(load_mni152_brain_mask(resolution=2), interpolation="nearest", **kw)
    return np.asarray(template.dataobj, dtype=np.float32), np.asarray(mask.dataobj) > 0


def brain() -> np.ndarray:
    """(X, Y, Z) bool: the MNI152 brain mask on the fixture grid."""
    return _mni()[1].copy()


def write_t1(path: Path, seed: int = 0, mask_path: Path | None = None) -> Path:
    """An MNI-space T1w as fMRIPrep writes it: the MNI152 template's intensities on the fixture grid
    with noise (``seed``), and the template's brain mask. An ellipsoid would not pass the check
    against the template (``smri.check_mni_space``)."""
    rng = np.random.default_rng(seed)
    template, b = _mni()
    data = np.abs(100 * template + 3 * rng.standard_normal(GRID)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    if mask_path is not None:
        nib.save(nib.Nifti1Image(b.astype(np.uint8), AFFINE), mask_path)
    return path


def write_bold(path: Path, n_vol: int, seed: int = 0, three_d: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    shape = GRID if three_d else (*GRID, n_vol)
    data = (100 + rng.standard_normal(shape)).astype(np.float32)
    img = nib.Nifti1Image(data, AFFINE)
    if not three_d:
        img.header.set_zooms((8.0, 8.0, 8.0, 2.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def fmriprep_anat(deriv: Path, sub: str, ses: str = "", seed: int = 0) -> tuple[Path, Path]:
    folder = deriv / "fmriprep" / sub / (ses or "") / "anat"
    stem = f"{sub}{'_' + ses if ses else ''}_space-{SPACE}"
    t1 = folder / f"{stem}_desc-preproc_T1w.nii.gz"
    mask = folder / f"{stem}_desc-brain_mask.nii.gz"
    folder.mkdir(parents=True, exist_ok=True)
    write_t1(t1, seed, mask)
    return t1, mask


def xcpd_tsv(deriv: Path, sub: str, atlas: str, ts: np.ndarray, names: list[str], ses: str = "",
             naming: str = "new", digits: int | None = None) -> Path:
    folder = deriv / "xcp_d" / sub / (ses or "") / "func"
    stem = f"{sub}{'_' + ses if ses else ''}_task-rest_space-{SPACE}"
    name = (f"{stem}_seg-{atlas}_stat-mean_timeseries.tsv" if naming == "new"
            else f"{stem}_atlas-{atlas}_timeseries.tsv")
    return write_timeseries_tsv(folder / name, ts, names, digits)


def fmriprep_confounds(deriv: Path, sub: str, n_vol: int, fd: float, ses: str = "") -> Path:
    folder = deriv / "fmriprep" / sub / (ses or "") / "func"
    return write_confounds(folder / f"{sub}{'_' + ses if ses else ''}_task-rest_desc-confounds_timeseries.tsv",
                           n_vol, fd)


def fmriprep_bold(deriv: Path, sub: str, n_vol: int, fd: float = 0.1, three_d: bool = False,
                  seed: int = 0) -> Path:
    folder = deriv / "fmriprep" / sub / "func"
    bold = write_bold(folder / f"{sub}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz", n_vol, seed, three_d)
    fmriprep_confounds(deriv, sub, n_vol, fd)
    return bold


def dosenbach_names() -> list[str]:
    from amage_core.data.atlas import load_atlas

    return list(load_atlas("dosenbach160").regions["name"])


def write_bids_root(root: Path, participants: pd.DataFrame) -> Path:
    """``dataset_description.json`` and ``participants.tsv`` of a BIDS dataset at ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "fixture", "BIDSVersion": "1.8.0"}')
    participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def derivative_descriptions(deriv: Path, pipelines: tuple[str, ...] = ("fmriprep", "xcp_d")) -> None:
    names = {"fmriprep": "fMRIPrep", "xcp_d": "XCP-D"}
    for folder in pipelines:
        (deriv / folder).mkdir(parents=True, exist_ok=True)
        (deriv / folder / "dataset_description.json").write_text(f'{{"Name": "{names[folder]}"}}')


def build_xcpd_cohort(root: Path, n: int, n_vol: int = 30, atlas: str = "dosenbach160") -> Path:
    """A BIDS dataset of ``n`` participants with XCP-D time series only: no T1, no BOLD, no confounds.

    ``sub-0001``... (ages 20-80, sexes alternating), each with ``derivatives/xcp_d/sub-X/func/``
    ``sub-X_task-rest_space-MNI152NLin2009cAsym_seg-<atlas>_stat-mean_timeseries.tsv`` holding ``n_vol`` volumes of :func:`series` (seed = participant number, so the first ``k``
    participants of any two such cohorts are the same files), 6 significant digits. About 4 ms a
    participant (2,000 in ~8 s, 45 kB each at 30 volumes x 160 regions)."""
    from amage_core.data.atlas import load_atlas

    names = list(load_atlas(atlas).regions["name"])
    width = max(4, len(str(n)))
    subs = [f"sub-{i:0{width}d}" for i in range(1, n + 1)]
    write_bids_root(root, pd.DataFrame({"participant_id": subs, "age": [20 + (i * 37) % 61 for i in range(n)],
                                        "sex": ["M" if i % 2 else "F" for i in range(n)]}))
    deriv = root / "derivatives"
    for i, sub in enumerate(subs, start=1):
        xcpd_tsv(deriv, sub, atlas, series(n_vol, len(names), i), names, digits=6)
    derivative_descriptions(deriv, ("xcp_d",))
    return root


# Expected outcome of build_bids: participant -> reason category ("" = included).
BIDS_EXPECTED = {
    "sub-01": "", "sub-02": "", "sub-03": "", "sub-04": "", "sub-05": "", "sub-06": "",
    "sub-07": "unreadable NIfTI", "sub-08": "wrong dimensionality", "sub-09": "empty regions",
    "sub-10": "too few volumes", "sub-11": "implausible age", "sub-12": "missing age",
    "sub-13": "duplicate participant ID", "sub-14": "excessive motion",
    "sub-15": "missing modality", "sub-16": "unreadable NIfTI", "sub-17": "missing modality",
}
BIDS_SEX = {"sub-01": "M", "sub-02": "F", "sub-03": "M", "sub-04": "F", "sub-05": "M", "sub-06": "F"}


def build_bids(root: Path, n_vol: int = 40) -> Path:
    """A BIDS dataset + fMRIPrep/XCP-D derivatives (synthetic-cohort layout) with broken cases."""
    names = dosenbach_names()
    deriv = root / "derivatives"
    rows = [("sub-01", 20, "M"), ("sub-02", 30, "F"), ("sub-03", 40, "male"), ("sub-04", 50, "female"),
            ("sub-05", 60, "1"), ("sub-06", 70, "2"), ("sub-07", 25, "M"), ("sub-08", 26, "M"),
            ("sub-09", 27, "F"), ("sub-10", 28, "F"), ("sub-11", 150, "M"), ("sub-12", "n/a", "F"),
            ("sub-13", 33, "M"), ("sub-13", 34, "M"), ("sub-14", 35, "F"), ("sub-15", 36, "M"),
            ("sub-16", 37, "F"), ("sub-17", 38, "M")]
    write_bids_root(root, pd.DataFrame(rows, columns=["participant_id", "age", "sex"]).assign(dx="control"))
    for i, (sub, _, _) in enumerate(rows):
        if sub in ("sub-13",) and (deriv / "fmriprep" / sub).exists():
            continue
        seed = i + 1
        if sub != "sub-15":
            t1, _ = fmriprep_anat(deriv, sub, seed=seed)
            if sub == "sub-16":
                truncate(t1)
        ts = series(n_vol, len(names), seed)
        if sub in ("sub-01", "sub-02", "sub-03", "sub-11", "sub-12", "sub-13", "sub-15", "sub-16"):
            xcpd_tsv(deriv, sub, "dosenbach160", ts, names, naming="new")
            fmriprep_confounds(deriv, sub, n_vol, 0.1)
        elif sub in ("sub-04", "sub-05"):
            xcpd_tsv(deriv, sub, "Dosenbach160", ts, names, naming="old")
            fmriprep_confounds(deriv, sub, n_vol, 0.1)
        elif sub == "sub-06":
            fmriprep_bold(deriv, sub, n_vol, seed=seed)
        elif sub == "sub-07":
            truncate(fmriprep_bold(deriv, sub, n_vol, seed=seed), 0.3)
        elif sub == "sub-08":
            fmriprep_bold(deriv, sub, n_vol, three_d=True, seed=seed)
        elif sub == "sub-09":
            ts[:, [3, 7]] = np.nan
            ts[:, 11] = 0.0
            xcpd_tsv(deriv, sub, "dosenbach160", ts, names)
        elif sub == "sub-10":
            xcpd_tsv(deriv, sub, "dosenbach160", ts[:20], names)
        elif sub == "sub-14":
            xcpd_tsv(deriv, sub, "dosenbach160", ts, names)
            fmriprep_confounds(deriv, sub, n_vol, 0.9)
        elif sub == "sub-17":
            write_bold(root / sub / "func" / f"{sub}_task-rest_bold.nii.gz", 5, seed)
    derivative_descriptions(deriv)
    return root


# ------------------------------------------------------------------ XCP-D's own atlases
def xcpd_atlas(deriv: Path, name: str = "4S156Parcels", n_regions: int = 12, networks: bool = True,
               image: bool = True, layout: str = "atlases") -> tuple[list[str], list[str], np.ndarray]:
    """An atlas as XCP-D ships it in its derivatives: ``_dseg.tsv`` (index, label[, network_label]) and,
    when ``image``, the ``_dseg.nii.gz`` label image on the 8 mm fixture grid (one box per region).

    ``layout``: ``"atlases"`` (``xcp_d/atlases/atlas-<A>/atlas-<A>_space-MNI152NLin6Asym_res-01_dseg``,
    the dseg TSV without space entities) or ``"sourcedata"`` (newer XCP-D:
    ``xcp_d/sourcedata/atlases/tpl-MNI152NLin6Asym/tpl-MNI152NLin6Asym_atlas-<A>_res-02_dseg``).
    Returns (labels, networks, (R, 3) centres in mm of each region's box)."""
    nets = [("Vis", "SomMot", "Default")[i % 3] if networks else "" for i in range(n_regions)]
    labels = [f"LH_{n or 'Parcel'}_{i + 1}" for i, n in enumerate(nets)]
    if layout == "atlases":
        folder = deriv / "xcp_d" / "atlases" / f"atlas-{name}"
        table = folder / f"atlas-{name}_dseg.tsv"
        img_path = folder / f"atlas-{name}_space-MNI152NLin6Asym_res-01_dseg.nii.gz"
    else:
        folder = deriv / "xcp_d" / "sourcedata" / "atlases" / "tpl-MNI152NLin6Asym"
        table = folder / f"tpl-MNI152NLin6Asym_atlas-{name}_res-02_dseg.tsv"
        img_path = folder / f"tpl-MNI152NLin6Asym_atlas-{name}_res-02_dseg.nii.gz"
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"index": np.arange(1, n_regions + 1) * 2, "label": labels})   # values 2, 4, ...
    if networks:
        df["network_label"] = nets
    df.to_csv(table, sep="\t", index=False)
    centres = np.full((n_regions, 3), np.nan)
    if image:
        data = np.zeros(GRID, dtype=np.int16)
        for r in range(n_regions):
            i0, j0 = 3 + 4 * (r % 4), 4 + 5 * (r // 4)
            data[i0:i0 + 3, j0:j0 + 3, 8:12] = df["index"][r]
            ijk = np.array([i0 + 1, j0 + 1, 9.5, 1.0])
            centres[r] = (AFFINE @ ijk)[:3]
        nib.save(nib.Nifti1Image(data, AFFINE), img_path)
    return labels, nets, centres
