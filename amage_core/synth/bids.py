"""Writing the synthetic dataset with BIDS / fMRIPrep / XCP-D names (book/architecture.md, section 1).

Every file is written atomically. NIfTI files are gzipped with a fixed header (no file name,
mtime 0), so the same seed gives byte-identical files.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from amage_core.io import atomic_write, write_json

SPACE = "MNI152NLin2009cAsym"
BIDS_VERSION = "1.9.0"
ATLAS_LABELS = {"dosenbach160": "Dosenbach160", "seitzman300": "Seitzman300", "power264": "Power264"}


def atlas_label(name: str) -> str:
    """The ``seg-<Atlas>`` label of an atlas name (``dosenbach160`` -> ``Dosenbach160``)."""
    return ATLAS_LABELS.get(name.lower(), "".join(ch for ch in name.title() if ch.isalnum()))


def paths(root: Path, pid: str, atlases: list[str]) -> dict[str, Path]:
    """Every per-participant file name (keys: t1, mask, confounds, confounds_json, bold, bold_json,
    and ``timeseries:<atlas>`` per atlas)."""
    anat = root / "derivatives" / "fmriprep" / pid / "anat"
    func = root / "derivatives" / "fmriprep" / pid / "func"
    xcpd = root / "derivatives" / "xcp_d" / pid / "func"
    out = {
        "t1": anat / f"{pid}_space-{SPACE}_desc-preproc_T1w.nii.gz",
        "mask": anat / f"{pid}_space-{SPACE}_desc-brain_mask.nii.gz",
        "confounds": func / f"{pid}_task-rest_desc-confounds_timeseries.tsv",
        "confounds_json": func / f"{pid}_task-rest_desc-confounds_timeseries.json",
        "bold": func / f"{pid}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz",
        "bold_json": func / f"{pid}_task-rest_space-{SPACE}_desc-preproc_bold.json",
    }
    for a in atlases:
        out[f"timeseries:{a}"] = xcpd / f"{pid}_task-rest_space-{SPACE}_seg-{atlas_label(a)}_stat-mean_timeseries.tsv"
    return out


def write_nifti_gz(path: Path, data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...] | None = None,
                   xyzt_units: tuple[str, str] = ("mm", "sec")) -> None:
    """Write ``data`` as a deterministic .nii.gz (sform = qform = ``affine``, code 4 = MNI)."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(*xyzt_units)
    img.set_sform(affine, code=4)
    img.set_qform(affine, code=4)
    if zooms is not None:
        img.header.set_zooms(zooms)
    payload = gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)
    with atomic_write(path, "wb") as fh:
        fh.write(payload)


def write_table(path: Path, df: pd.DataFrame, float_format: str = "%.6g") -> None:
    """TSV with BIDS missing values ("n/a"); all-numeric tables are formatted in bulk (fast)."""
    numeric = all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in df.dtypes)
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        if not numeric:
            df.to_csv(fh, sep="\t", index=False, na_rep="n/a", float_format=float_format, lineterminator="\n")
            return
        fh.write("\t".join(map(str, df.columns)) + "\n")
        row = "\t".join([float_format] * df.shape[1])
        values = df.to_numpy(dtype=float)
        missing = np.isnan(values).any(axis=1)
        lines = [
            "\t".join("n/a" if np.isnan(v) else float_format % v for v in r) if miss else row % tuple(r)
            for r, miss in zip(values, missing)
        ]
        fh.write("\n".join(lines) + "\n")


def write_descriptions(root: Path, name: str, generated_by: dict) -> None:
    """dataset_description.json of the raw dataset and of each derivative."""
    write_json(root / "dataset_description.json", {
        "Name": name, "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
        "GeneratedBy": [generated_by],
        "License": "CC0 (synthetic data, no participant information)",
    })
    for pipeline in ("fmriprep", "xcp_d"):
        write_json(root / "derivatives" / pipeline / "dataset_description.json", {
            "Name": f"{name} ({pipeline}-style derivatives)", "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative", "GeneratedBy": [generated_by],
        })
