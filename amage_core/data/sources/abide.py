"""ABIDE I (PCP preprocessed) through nilearn's own ``fetch_abide_pcp``.

``root`` is nilearn's ``data_dir`` (it holds ``ABIDE_pcp/``). The call is the one a user with
internet makes; with the files already cached it reads them offline:

    fetch_abide_pcp(data_dir=root, derivatives=["rois_cc200"], pipeline="cpac",
                    band_pass_filtering=True, global_signal_regression=True,
                    quality_checked=quality_checked)

Each participant's CC200 time series (``<FILE_ID>_rois_cc200.1D``: 200 columns ``#1``..``#200``,
one row per volume) is re-read in the parallel preparation step, not kept in memory here.
Participant IDs are ``sub-<SUB_ID, 7 digits>`` (as in ABIDE's BIDS release); ``SITE_ID`` is the
site; ``SITE_ID``, ``FILE_ID``, ``DX_GROUP`` (1 = autism, 2 = control) and ``dx``
(autism/control) are kept as extra participants.tsv columns. Sex: SEX 1 = male, 2 = female.

``freesurfer=PATH`` adds the FreeSurfer feature table (keyed by ``FILE_ID``; its demographic
columns are dropped) as the structural ``table`` modality. ABIDE has no T1 here.
"""
from __future__ import annotations

import functools
from pathlib import Path

from amage_core.config import PrepConfig
from amage_core.data.sources.base import (ParticipantRecord, SourceScan, mark_duplicates,
                                          normalise_sex, to_age)

DERIVATIVE = "rois_cc200"


def _strategy(band_pass_filtering: bool, global_signal_regression: bool) -> str:
    """nilearn's cache folder name for the preprocessing strategy (e.g. ``filt_global``)."""
    return (("" if band_pass_filtering else "no") + "filt_"
            + ("" if global_signal_regression else "no") + "global")


def scan(root: Path, derivatives: Path | None, cfg: PrepConfig, quality_checked: bool = False,
         pipeline: str = "cpac", band_pass_filtering: bool = True,
         global_signal_regression: bool = True, n_subjects: int | None = None,
         sub_ids: list[int] | None = None, freesurfer: str | Path | None = None,
         verbose: int = 0) -> SourceScan:
    from amage_core.data.tables import load_feature_table

    root = Path(root)
    folder = root / "ABIDE_pcp" / pipeline / _strategy(band_pass_filtering, global_signal_regression)
    pheno = _phenotypic(str(root), n_subjects, pipeline, band_pass_filtering, global_signal_regression,
                        quality_checked, tuple(int(s) for s in sub_ids or ()), verbose,
                        _stamp(root / "ABIDE_pcp"), _stamp(folder)).copy()
    feats = None
    if freesurfer is not None:
        file_to_sub = dict(zip(pheno["FILE_ID"].astype(str), pheno["SUB_ID"]))
        feats = load_feature_table(
            freesurfer, "FILE_ID",
            id_map=lambda f: f"sub-{int(file_to_sub[f]):07d}" if f in file_to_sub else f"file-{f}")
    records = []
    for _, row in pheno.iterrows():
        sub = f"sub-{int(row['SUB_ID']):07d}"
        dx = int(row["DX_GROUP"]) if str(row["DX_GROUP"]).strip() not in ("", "nan") else None
        r = ParticipantRecord(
            sub, to_age(row["AGE_AT_SCAN"]), normalise_sex(row["SEX"]), "abide", site=str(row["SITE_ID"]),
            timeseries=folder / f"{row['FILE_ID']}_{DERIVATIVE}.1D",
            extra={"SITE_ID": row["SITE_ID"], "FILE_ID": row["FILE_ID"], "DX_GROUP": dx,
                   "dx": {1: "autism", 2: "control"}.get(dx, "n/a")},
            demographics=folder.parent.parent / "Phenotypic_V1_0b_preprocessed1.csv")
        if feats is not None:
            r.table_row = feats.row(sub)
        records.append(r)
    mark_duplicates(records, records[0].demographics if records else None)
    modalities = {"fmri"} | ({"table"} if feats is not None else set())
    return SourceScan("abide", records, frozenset(modalities),
                      table_columns=feats.columns if feats is not None else [], atlas="cc200",
                      notes=[f"ABIDE PCP {pipeline}/{folder.name}, quality_checked={quality_checked}"])


def _stamp(folder: Path) -> tuple:
    """What changes when files are added to, removed from or replaced in ``folder``."""
    try:
        st = folder.stat()
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=8)
def _phenotypic(root: str, n_subjects: int | None, pipeline: str, band_pass_filtering: bool,
                global_signal_regression: bool, quality_checked: bool, sub_ids: tuple[int, ...],
                verbose: int, *stamps: tuple):
    """nilearn's ``fetch_abide_pcp`` phenotypic table of the participants it has time series for,
    once per process and state of the cache folders (``stamps``): the fetcher reads every
    participant's time series (about 1 s for ABIDE's 871 files) and the book asks for the cohort
    dozens of times. The time series themselves are fingerprinted and read by the preparation."""
    from nilearn.datasets import fetch_abide_pcp

    filters = {"SUB_ID": list(sub_ids)} if sub_ids else {}
    bunch = fetch_abide_pcp(data_dir=root, n_subjects=n_subjects, pipeline=pipeline,
                            band_pass_filtering=band_pass_filtering,
                            global_signal_regression=global_signal_regression,
                            derivatives=[DERIVATIVE], quality_checked=quality_checked,
                            verbose=verbose, **filters)
    return bunch.phenotypic.reset_index(drop=True)
