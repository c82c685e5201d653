"""Any BIDS dataset with fMRIPrep and/or XCP-D derivatives (the synthetic cohort's layout).

    <root>/participants.tsv                  participant_id, age, sex (M/F, male/female, or 1/2 with
                                             1 = male), optional site, session and extra columns
    <root>/sub-<id>/[ses-<s>/]anat|func/     the raw BIDS (optional: the raw T1 is registered to MNI152
                                             when fMRIPrep has none, t1_source="auto"/"register",
                                             or resized, "resize")
    <derivatives>/fmriprep*/sub-<id>/...     fMRIPrep (default <root>/derivatives)
    <derivatives>/xcp_d*/sub-<id>/...        XCP-D, either naming

Extra columns of participants.tsv (e.g. ``dx``) are carried into the prepared participants.tsv.
A structural table (``table=PATH``, keyed by ``participant_id``) adds the table modality. T1
(``smri``) is offered when at least one participant has a T1w (fMRIPrep MNI or raw BIDS); a dataset
with fMRI derivatives only (e.g. XCP-D time series, as for ABIDE) is an fMRI-only source, noted in
the manifest, instead of one where every participant is excluded for a missing T1.
"""
from __future__ import annotations

from pathlib import Path

from amage_core.config import PrepConfig
from amage_core.data.sources.base import (ParticipantRecord, SourceScan, check_sex_codes,
                                          mark_duplicates, normalise_sex, read_table, require_columns,
                                          label_problem, text_or_empty, to_age, with_prefix)
from amage_core.data.sources.derivatives import (attach_derivatives, locate_derivatives,
                                                 raw_files)

_KNOWN = {"participant_id", "age", "sex", "site", "session"}


def _sessions(root: Path, dirs, sub: str) -> list[str]:
    if label_problem(sub) is not None:
        return []
    bases = [root] + dirs.fmriprep + dirs.xcpd
    found = {p.name for b in bases for p in (b / sub).glob("ses-*") if p.is_dir()}
    return sorted(found)


def scan(root: Path, derivatives: Path | None, cfg: PrepConfig, cohort: str | None = None,
         table: str | Path | None = None, table_id_column: str = "participant_id") -> SourceScan:
    """Records for every participant of ``participants.tsv`` (and any with derivatives but no row)."""
    from amage_core.data.tables import load_feature_table

    root = Path(root)
    tsv = root / "participants.tsv"
    if not tsv.is_file():
        raise FileNotFoundError(f"{root}: no participants.tsv (is this a BIDS dataset root?)")
    df = read_table(tsv)
    require_columns(df, ["participant_id", "age", "sex"], tsv)
    check_sex_codes([v for v in df["sex"] if text_or_empty(v)], tsv)
    dirs = locate_derivatives(derivatives, root)
    cohort = cohort or root.name
    feats = load_feature_table(table, table_id_column, id_map=with_prefix) if table else None
    records: list[ParticipantRecord] = []
    for _, row in df.iterrows():
        sub = with_prefix(row["participant_id"])
        extra = {k: row[k] for k in df.columns if k not in _KNOWN}
        records.append(ParticipantRecord(
            participant_id=sub, age=to_age(row["age"]), sex=normalise_sex(row["sex"]), cohort=cohort,
            site=text_or_empty(row["site"]) if "site" in df else "",
            session=with_prefix(text_or_empty(row["session"]), "ses-") if "session" in df
            and text_or_empty(row["session"]) else "",
            extra=extra, demographics=tsv))
    listed = {r.participant_id for r in records}
    unlisted = sorted({p.name for b in [root] + dirs.fmriprep + dirs.xcpd for p in b.glob("sub-*")
                       if p.is_dir()} - listed)
    for sub in unlisted:
        records.append(ParticipantRecord(sub, None, None, cohort, demographics=tsv,
                                         extra={k: "" for k in df.columns if k not in _KNOWN}))
    mark_duplicates(records, tsv)
    for r in records:
        if not r.session:
            sessions = _sessions(root, dirs, r.participant_id)
            for ses in [""] + sessions:
                r.session = ses
                attach_derivatives(r, dirs, cfg.atlas)
                if r.timeseries or r.bold:
                    break
            else:
                r.session = sessions[0] if len(sessions) == 1 else ""
                attach_derivatives(r, dirs, cfg.atlas)
        else:
            attach_derivatives(r, dirs, cfg.atlas)
        r.t1_raw, r.raw_bold = raw_files(root, r.participant_id, r.session)
        if feats is not None:
            r.table_row = feats.row(r.participant_id)
    has_t1 = any(r.t1_mni is not None or r.t1_raw is not None for r in records)
    modalities = {"fmri"} | ({"smri"} if has_t1 else set()) | ({"table"} if feats is not None else set())
    notes = [] if has_t1 else ["no participant has a T1w (fMRIPrep space-MNI152NLin2009cAsym "
                               "desc-preproc_T1w or raw BIDS anat/*_T1w): T1 not offered"]
    return SourceScan("bids", records, frozenset(modalities),
                      table_columns=feats.columns if feats is not None else [], notes=notes)
