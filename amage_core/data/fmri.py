"""Resting fMRI -> atlas time series -> functional connectivity (Fisher z), with motion QC.

Two inputs, both with the field's tools:
- XCP-D time-series TSVs (either naming; ABIDE ``.1D`` files are the same format): one column
  per region (header = region names), one row per volume; ``n/a`` read as NaN.
- fMRIPrep preprocessed BOLD in MNI space: ``nilearn.maskers.NiftiSpheresMasker`` (coordinate
  atlases) or ``NiftiLabelsMasker`` (label atlases), denoised with the fMRIPrep confounds through
  ``nilearn.interfaces.fmriprep.load_confounds_strategy`` (``PrepConfig.confound_strategy``).

A region is *empty* when it has no usable signal: any non-finite value or zero variance (all
zero, outside the field of view). Connectivity is computed on the non-empty regions with
``nilearn.connectome.ConnectivityMeasure(kind=...)``; empty regions get zero rows and columns.
The covariance estimator is ``PrepConfig.fc_estimator`` (empirical = plain Pearson, not nilearn's
Ledoit-Wolf default). Correlation kinds are Fisher z transformed (``arctanh`` of the clipped value); the diagonal is 0.
Motion: mean framewise displacement from the confounds' ``framewise_displacement`` column (the
first volume's ``n/a`` ignored). A column that cannot be checked (non-numeric text such as ``2.0mm``,
negative or infinite values, every value ``n/a``) and confounds with fewer rows than the series has
volumes are exclusions naming the file; with no confounds file at all the participant is kept and the
check is recorded as not run (``motion_qc`` in ``qc.tsv``, a line in the QC summary).
Two regions whose series are identical (|r| >= 1 - 2e-6) make the connectivity degenerate (Fisher z
pinned at the clip): an exclusion naming them.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from amage_core.config import PrepConfig
from amage_core.data.atlas import Atlas
from amage_core.data.qc import (EMPTY_REGIONS, EXCESSIVE_MOTION, MISMATCHED_LENGTH, MISSING_MODALITY,
                                SINGULAR, TOO_FEW_VOLUMES, UNREADABLE_NIFTI, UNREADABLE_TABLE,
                                WRONG_DIM, QCError)

CLIP = 1.0 - 1e-6
READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


@dataclass
class FmriResult:
    connectivity: np.ndarray    # (R, R) float32, Fisher z (correlation kinds), diagonal 0
    empty: np.ndarray           # (R,) bool, regions without signal (zero rows/columns)
    n_volumes: int
    mean_fd: float              # mm; NaN when no confounds were available
    motion_qc: str = "checked"  # or "not run: <why>"
    source: str = ""            # "xcpd" (time-series TSV) or "bold" (fMRIPrep BOLD + masker)
    file: str = ""              # the file the series came from


def require_regular_file(path: Path, participant: str, category: str) -> None:
    """QCError unless ``path`` is a regular file (a FIFO or a device would block or never end)."""
    if not Path(path).is_file():
        what = "missing" if not Path(path).exists() else "not a regular file (a FIFO, device or folder)"
        raise QCError(participant, path, f"{category}: {what}")


def read_timeseries_tsv(path: Path, participant: str) -> pd.DataFrame:
    """(T, R') time series of a TSV, columns named by region; QCError when unreadable."""
    require_regular_file(path, participant, UNREADABLE_TABLE)
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise QCError(participant, path, f"{UNREADABLE_TABLE}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    # from the dtypes, not df[c] per column (a Series built per region cost as much as the read);
    # a name duplicated once stripped counts as non-numeric, as df[c] (a DataFrame) did
    dup = df.columns.duplicated(keep=False)
    bad = [c for c, dtype, d in zip(df.columns, df.dtypes, dup)
           if d or not pd.api.types.is_numeric_dtype(dtype)]
    if bad:
        raise QCError(participant, path, f"{UNREADABLE_TABLE}: non-numeric column(s) {bad[:3]}")
    return df


def align_to_atlas(df: pd.DataFrame, atlas: Atlas, path: Path, participant: str) -> np.ndarray:
    """(T, R) columns in the atlas's region order.

    By name when every atlas region is a column (extra columns ignored); by position when the
    names differ but the count equals R, unless some atlas names are columns at other positions
    (the order is then ambiguous); otherwise QCError.
    """
    names = list(atlas.regions["name"])
    if set(names) <= set(df.columns):
        return df[names].to_numpy(dtype=np.float64)
    if df.shape[1] == len(names):
        columns = list(df.columns)
        moved = [n for i, n in enumerate(names) if n in columns and columns.index(n) != i]
        if moved:
            raise QCError(participant, path, f"{MISSING_MODALITY}: time-series columns do not match "
                                             f"atlas {atlas.name}: {sorted(set(names) - set(columns))[:3]} "
                                             f"absent and {moved[:3]} at other positions (ambiguous order)")
        return df.to_numpy(dtype=np.float64)
    raise QCError(participant, path, f"{MISSING_MODALITY}: time series has {df.shape[1]} columns, "
                                     f"atlas {atlas.name} has {len(names)} regions")


_FD_MISSING = {"", "n/a", "na", "nan"}


def framewise_displacement(path: Path, participant: str) -> np.ndarray:
    """(T,) framewise displacement (mm) of a confounds/motion TSV, NaN where ``n/a``.

    QCError (naming the file) for a missing or unreadable column, a non-numeric value (``2.0mm``), a
    negative or infinite value, or a column without any value."""
    require_regular_file(path, participant, UNREADABLE_TABLE)
    try:
        fd = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, usecols=["framewise_displacement"])
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise QCError(participant, path, f"{UNREADABLE_TABLE}: no readable framewise_displacement "
                                         f"column ({exc})") from exc
    text = fd["framewise_displacement"].str.strip()
    missing = text.str.lower().isin(_FD_MISSING).to_numpy()
    values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=float)
    odd = ~missing & np.isnan(values)
    if odd.any():
        raise QCError(participant, path, f"{UNREADABLE_TABLE}: framewise_displacement holds non-numeric "
                                         f"value(s) {sorted(set(text[odd]))[:3]} (mm numbers or n/a expected)")
    bad = ~missing & (~np.isfinite(values) | (values < 0))
    if bad.any():
        raise QCError(participant, path, f"{UNREADABLE_TABLE}: framewise_displacement holds negative or "
                                         f"infinite value(s) {sorted(set(text[bad]))[:3]} (row(s) "
                                         f"{(np.flatnonzero(bad) + 1).tolist()[:3]})")
    if missing.all():
        raise QCError(participant, path, f"{UNREADABLE_TABLE}: framewise_displacement has no value (all "
                                         f"{len(values)} rows n/a): motion cannot be checked")
    return values


def mean_framewise_displacement(path: Path | None, participant: str) -> float:
    """Mean of the ``framewise_displacement`` column (mm), NaN when ``path`` is None."""
    if path is None:
        return float("nan")
    values = framewise_displacement(path, participant)
    return float(np.nanmean(values))


def bold_timeseries(bold: Path, atlas: Atlas, cfg: PrepConfig, participant: str) -> np.ndarray:
    """(T, R) atlas time series of a preprocessed BOLD, denoised with its fMRIPrep confounds."""
    import nibabel as nib
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.maskers import NiftiLabelsMasker, NiftiSpheresMasker

    require_regular_file(bold, participant, UNREADABLE_NIFTI)
    try:
        img = nib.load(str(bold))
    except (nib.filebasedimages.ImageFileError, *READ_ERRORS) as exc:
        raise QCError(participant, bold, f"{UNREADABLE_NIFTI}: {exc}") from exc
    if len(img.shape) != 4:
        raise QCError(participant, bold, f"{WRONG_DIM}: BOLD has shape {img.shape}, expected 4D")
    if img.shape[3] < cfg.min_volumes:
        raise QCError(participant, bold, f"{TOO_FEW_VOLUMES}: {img.shape[3]} < {cfg.min_volumes}")
    try:
        confounds, sample_mask = load_confounds_strategy(str(bold), denoise_strategy=cfg.confound_strategy)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise QCError(participant, bold, f"{MISSING_MODALITY}: fMRIPrep confounds for strategy "
                                         f"{cfg.confound_strategy!r} not usable ({exc})") from exc
    if confounds is not None and len(confounds) != img.shape[3]:
        raise QCError(participant, bold, f"{MISMATCHED_LENGTH}: the fMRIPrep confounds have {len(confounds)} "
                                         f"rows, the BOLD {img.shape[3]} volumes")
    t_r = float(img.header.get_zooms()[3]) if len(img.header.get_zooms()) > 3 else None
    common = dict(t_r=t_r or None, standardize=None, detrend=False)
    if atlas.kind == "labels":
        masker = NiftiLabelsMasker(labels_img=atlas.maps, resampling_target="data", **common)
    else:
        masker = NiftiSpheresMasker(seeds=atlas.coords, radius=atlas.radius_mm, allow_overlap=True,
                                    **common)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ts = masker.fit_transform(img, confounds=confounds, sample_mask=sample_mask)
        except READ_ERRORS as exc:
            raise QCError(participant, bold, f"{UNREADABLE_NIFTI}: {type(exc).__name__}: {exc}") from exc
    # nilearn replaces NaN/inf voxels with zeros (and only warns): a region would silently average them
    nonfinite = [w for w in caught if "NaN" in str(w.message) or "Non-finite" in str(w.message)]
    for w in caught:
        if w not in nonfinite:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if nonfinite:
        raise QCError(participant, bold, f"{UNREADABLE_NIFTI}: non-finite (NaN/inf) voxels in the BOLD")
    if atlas.kind == "labels":
        ts = _labels_in_atlas_order(ts, masker, atlas)
    return np.asarray(ts, dtype=np.float64)


def _labels_in_atlas_order(ts: np.ndarray, masker, atlas: Atlas) -> np.ndarray:
    """Columns of a fitted NiftiLabelsMasker in the atlas's order; absent labels -> NaN columns."""
    ids = {int(v): int(k) for k, v in masker.region_ids_.items() if k != "background"}
    out = np.full((ts.shape[0], atlas.n_regions), np.nan)
    for j, value in enumerate(atlas.label_values or ()):
        if value in ids:
            out[:, j] = ts[:, ids[value]]
    return out


def empty_regions(ts: np.ndarray) -> np.ndarray:
    """(R,) bool: regions with any non-finite value or zero variance, from (T, R) series."""
    finite = np.isfinite(ts).all(axis=0)
    var = np.zeros(ts.shape[1])
    var[finite] = ts[:, finite].var(axis=0)
    return ~finite | (var <= 1e-12)


# connectivity kinds that invert the covariance
INVERTING_KINDS = ("partial correlation",)


def connectivity(ts: np.ndarray, kind: str = "correlation", fisher_z: bool = True,
                 estimator: str = "empirical") -> np.ndarray:
    """(R, R) float32 connectivity of (T, R) series (nilearn ``ConnectivityMeasure``).

    ``estimator``: ``"empirical"`` (plain Pearson correlation, as XCP-D computes it) or
    ``"ledoit-wolf"`` (nilearn's default shrinkage; needed for partial correlation when T < R).
    Correlation kinds: Fisher z (``arctanh``, clipped to |r| <= 1 - 1e-6) when ``fisher_z``.
    The diagonal is set to 0.
    """
    from nilearn.connectome import ConnectivityMeasure
    from scipy.linalg import LinAlgWarning
    from sklearn.covariance import EmpiricalCovariance, LedoitWolf

    cov = (EmpiricalCovariance(store_precision=False) if estimator == "empirical"
           else LedoitWolf(store_precision=False))
    measure = ConnectivityMeasure(cov_estimator=cov, kind=kind, standardize="zscore_sample")
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", LinAlgWarning)       # singular input: caller checks finiteness
        mat = measure.fit_transform([ts])[0]
    if fisher_z and kind in ("correlation", "partial correlation"):
        mat = np.arctanh(np.clip(mat, -CLIP, CLIP))
    np.fill_diagonal(mat, 0.0)
    return mat.astype(np.float32)


def participant_fmri(record, atlas: Atlas, cfg: PrepConfig) -> FmriResult:
    """Connectivity and QC of one participant; raises :class:`QCError` with the reason."""
    pid = record.participant_id
    use_tsv = record.timeseries is not None and cfg.fmri_input in ("auto", "xcpd")
    use_bold = not use_tsv and record.bold is not None and cfg.fmri_input in ("auto", "bold")
    if use_tsv:
        path = record.timeseries
        ts = align_to_atlas(read_timeseries_tsv(path, pid), atlas, path, pid)
        if ts.shape[0] < cfg.min_volumes:
            raise QCError(pid, path, f"{TOO_FEW_VOLUMES}: {ts.shape[0]} < {cfg.min_volumes}")
    elif use_bold:
        path = record.bold
        ts = bold_timeseries(path, atlas, cfg, pid)
    else:
        raise QCError(pid, record.raw_bold, _missing_fmri_reason(record, atlas, cfg))
    if record.confounds is None:
        mean_fd, motion_qc = float("nan"), "not run: no fMRIPrep confounds or XCP-D motion file"
    else:
        fd = framewise_displacement(record.confounds, pid)
        if len(fd) < ts.shape[0]:
            # (more rows is XCP-D's censoring: its motion file keeps the volumes its series dropped)
            raise QCError(pid, record.confounds, f"{MISMATCHED_LENGTH}: {len(fd)} confound rows for "
                                                 f"{ts.shape[0]} volumes of {path}")
        mean_fd, motion_qc = float(np.nanmean(fd)), "checked"
    if np.isfinite(mean_fd) and mean_fd > cfg.fd_threshold:
        raise QCError(pid, record.confounds,
                      f"{EXCESSIVE_MOTION}: mean FD {mean_fd:.3f} mm > {cfg.fd_threshold:g} mm")
    empty = empty_regions(ts)
    keep = ~empty
    if empty.any() and (cfg.empty_regions == "drop-participant" or keep.sum() < 2):
        names = list(atlas.regions["name"][empty])
        raise QCError(pid, path, f"{EMPTY_REGIONS}: {int(empty.sum())} region(s) without signal "
                                 f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    if cfg.fc_kind in INVERTING_KINDS and cfg.fc_estimator == "empirical":
        # an empirical covariance of lower rank than its size has no inverse; the inversion may still
        # return finite numbers (rounding), silently wrong, so the rank is checked first
        centred = ts[:, keep] - ts[:, keep].mean(axis=0)
        rank = int(np.linalg.matrix_rank(centred / np.maximum(centred.std(axis=0), 1e-12)))
        if rank < int(keep.sum()):
            raise QCError(pid, path, f"{SINGULAR}: {cfg.fc_kind} of {int(keep.sum())} regions needs a "
                                     f"covariance of full rank; {ts.shape[0]} volumes give rank {rank} "
                                     "(try fc_estimator='ledoit-wolf')")
    try:
        mat = connectivity(ts[:, keep], cfg.fc_kind, cfg.fisher_z, cfg.fc_estimator)
    except ValueError as exc:              # e.g. values so large that the standardised series overflow
        raise QCError(pid, path, f"{SINGULAR}: {cfg.fc_kind} could not be computed ({exc})") from exc
    if not np.isfinite(mat).all():
        raise QCError(pid, path, f"{SINGULAR}: {cfg.fc_kind} of {int(keep.sum())} regions from "
                                 f"{ts.shape[0]} volumes is not finite (try fc_estimator='ledoit-wolf')")
    if cfg.fc_kind == "correlation":
        limit = np.arctanh(1 - 2e-6) if cfg.fisher_z else 1 - 2e-6
        off = np.abs(mat) >= limit
        np.fill_diagonal(off, False)
        if off.any():
            names = list(atlas.regions["name"][keep])
            i, j = np.argwhere(off)[0]
            raise QCError(pid, path, f"{SINGULAR}: {int(off.sum()) // 2} pair(s) of regions with identical "
                                     f"time series (|r| = 1), e.g. {names[i]} and {names[j]}")
    full = np.zeros((atlas.n_regions, atlas.n_regions), dtype=np.float32)
    full[np.ix_(keep, keep)] = mat
    return FmriResult(full, empty, int(ts.shape[0]), mean_fd, motion_qc,
                      "xcpd" if use_tsv else "bold", str(path))


def _missing_fmri_reason(record, atlas: Atlas, cfg: PrepConfig) -> str:
    if cfg.fmri_input == "xcpd" and record.bold is not None:
        return f"{MISSING_MODALITY}: fMRI (no XCP-D time series for atlas {atlas.name}; fmri_input='xcpd')"
    if cfg.fmri_input == "bold" and record.timeseries is not None:
        return f"{MISSING_MODALITY}: fMRI (no fMRIPrep preprocessed BOLD; fmri_input='bold')"
    if record.xcpd_atlases:
        return (f"{MISSING_MODALITY}: fMRI (XCP-D time series only for atlas(es) "
                f"{', '.join(record.xcpd_atlases)}, not {atlas.name})")
    if record.raw_bold is not None:
        return (f"{MISSING_MODALITY}: fMRI (raw BOLD only: run fMRIPrep, optionally XCP-D, and "
                "pass the derivatives)")
    return f"{MISSING_MODALITY}: fMRI (no XCP-D time series and no fMRIPrep preprocessed BOLD)"
