"""OASIS-3: BIDS-style sessions ``sub-OAS3xxxx/ses-dNNNN`` (NNNN = days since entry).

    <root>/sub-OAS30001/ses-d0129/anat/sub-OAS30001_ses-d0129[_acq-...]_run-01_T1w.nii.gz
    <root>/sub-OAS30001/ses-d0129/func/sub-OAS30001_ses-d0129_task-rest_run-01_bold.nii.gz
    <root>/OASIS3_demographics.csv          OASISID, AgeatEntry, GENDER (1 = male, 2 = female)
    <root>/OASIS3_UDSb4_cdr.csv             OASISID, days_to_visit, CDRTOT, ...   (optional)
    <root>/OASIS3_UDSd1_diagnoses.csv       OASISID, days_to_visit, NORMCOG, ...  (optional)
    <derivatives>/fmriprep*, xcp_d*         the user's derivatives, with ses-dNNNN folders

Age at a session = AgeatEntry + NNNN / 365.25. With ``cognitively_normal=True`` a session counts
only if its nearest clinical visit (within ``visit_window_days``, default 180) has CDRTOT == 0
(CDR file) and NORMCOG == 1 (diagnoses file); at least one of the two files is then required.
One session per participant (``sessions="earliest"``): the earliest eligible session with both
a T1 and a resting fMRI derivative, else the earliest eligible one (which QC then excludes for
its missing modality); ``sessions="all"`` keeps every session.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from amage_core.config import PrepConfig
from amage_core.data.qc import DUPLICATE_ID, NOT_NORMAL
from amage_core.data.sources.base import (ParticipantRecord, SourceScan, mark_duplicates,
                                          normalise_sex, read_table, require_columns, to_age)
from amage_core.data.sources.derivatives import attach_derivatives, locate_derivatives, raw_files

_SES = re.compile(r"^ses-d(\d+)$")
DEMOGRAPHICS = "OASIS3_demographics.csv"
CDR = "OASIS3_UDSb4_cdr.csv"
DIAGNOSES = "OASIS3_UDSd1_diagnoses.csv"


def session_days(session: str) -> int:
    """``"ses-d0129"`` -> 129; ValueError for any other name."""
    m = _SES.match(session)
    if not m:
        raise ValueError(f"{session!r} is not an OASIS-3 session name (ses-dNNNN)")
    return int(m.group(1))


def age_at_session(age_at_entry: float, session: str) -> float:
    """Age in years at ``ses-dNNNN``: AgeatEntry + NNNN / 365.25."""
    return float(age_at_entry) + session_days(session) / 365.25


def _clinical(path: Path, column: str) -> pd.DataFrame:
    df = read_table(path)
    require_columns(df, ["OASISID", "days_to_visit", column], path)
    return pd.DataFrame({"id": df["OASISID"].str.strip(),
                         "days": pd.to_numeric(df["days_to_visit"], errors="coerce"),
                         "value": pd.to_numeric(df[column], errors="coerce")}).dropna(subset=["days"])


def _nearest_ok(visits: pd.DataFrame, pid: str, days: int, window: float, ok) -> bool:
    v = visits[visits["id"] == pid]
    if v.empty:
        return False
    gap = (v["days"] - days).abs()
    i = gap.idxmin()
    return bool(gap[i] <= window and ok(v.at[i, "value"]))


def scan(root: Path, derivatives: Path | None, cfg: PrepConfig,
         demographics: str | Path | None = None, clinical_dir: str | Path | None = None,
         cognitively_normal: bool = False, visit_window_days: float = 180.0,
         sessions: str = "earliest") -> SourceScan:
    root = Path(root)
    if sessions not in ("earliest", "all"):
        raise ValueError(f"oasis3: sessions must be 'earliest' or 'all', not {sessions!r}")
    demo_path = Path(demographics) if demographics else root / DEMOGRAPHICS
    if not demo_path.is_file():
        raise FileNotFoundError(f"{demo_path}: OASIS-3 demographics not found (pass demographics=PATH)")
    demo = read_table(demo_path)
    require_columns(demo, ["OASISID", "AgeatEntry", "GENDER"], demo_path)
    demo["OASISID"] = demo["OASISID"].str.strip()
    entry = {}
    for _, row in demo.iterrows():
        entry.setdefault(row["OASISID"], []).append((to_age(row["AgeatEntry"]), normalise_sex(row["GENDER"])))
    checks = []
    if cognitively_normal:
        cdir = Path(clinical_dir) if clinical_dir else demo_path.parent
        if (cdir / CDR).is_file():
            checks.append((_clinical(cdir / CDR, "CDRTOT"), lambda v: v == 0))
        if (cdir / DIAGNOSES).is_file():
            checks.append((_clinical(cdir / DIAGNOSES, "NORMCOG"), lambda v: v == 1))
        if not checks:
            raise FileNotFoundError(f"{cdir}: cognitively_normal=True needs {CDR} and/or {DIAGNOSES}")
    dirs = locate_derivatives(derivatives, root)
    subjects = sorted({p.name for b in [root] + dirs.fmriprep + dirs.xcpd
                       for p in b.glob("sub-OAS3*") if p.is_dir()})
    records: list[ParticipantRecord] = []
    for sub in subjects:
        oasis_id = sub.removeprefix("sub-")
        ses_names = sorted({p.name for b in [root] + dirs.fmriprep + dirs.xcpd
                            for p in (b / sub).glob("ses-d*") if _SES.match(p.name)}, key=session_days)
        rows = entry.get(oasis_id, [(None, None)])
        age0, sex = rows[0]
        candidates = []
        for ses in ses_names:
            r = ParticipantRecord(sub, None if age0 is None else age_at_session(age0, ses), sex,
                                  "oasis3", session=ses, demographics=demo_path)
            attach_derivatives(r, dirs, cfg.atlas)
            r.t1_raw, r.raw_bold = raw_files(root, sub, ses)
            days = session_days(ses)
            if cognitively_normal and not all(_nearest_ok(v, oasis_id, days, visit_window_days, ok)
                                              for v, ok in checks):
                r.problem = (f"{NOT_NORMAL}: no clinical visit within {visit_window_days:g} days of "
                             f"{ses} with CDR 0 / NORMCOG 1")
            if len(rows) > 1:
                r.problem = f"{DUPLICATE_ID}: {oasis_id} has {len(rows)} rows in {demo_path}"
            candidates.append(r)
        if not candidates:
            continue
        if sessions == "all":
            records += candidates
            continue
        eligible = [r for r in candidates if r.problem is None] or candidates
        complete = [r for r in eligible if (r.t1_mni or r.t1_raw) and (r.timeseries or r.bold)]
        records.append((complete or eligible)[0])
    mark_duplicates(records, demo_path)
    return SourceScan("oasis3", records, frozenset({"fmri", "smri"}), notes=[f"demographics: {demo_path}"])
