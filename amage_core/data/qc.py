"""Quality control: why a participant is excluded, and the summary of a prepared cohort.

Every participant ends ``included`` or ``excluded`` with a reason. A reason is one line that
starts with a fixed category (the text before the first ``:``), so reasons can be counted:

    missing modality | unreadable NIfTI | wrong dimensionality | too few volumes |
    excessive motion | empty regions | missing age | implausible age | duplicate participant ID |
    unreadable table | not cognitively normal | empty image | singular connectivity |
    mismatched grid | registration failed | invalid participant ID | mismatched length |
    wrong space

A reason is always one line (line breaks in a library's message are joined), so ``qc.tsv`` can be
read with grep and cut.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

MISSING_MODALITY = "missing modality"
UNREADABLE_NIFTI = "unreadable NIfTI"
WRONG_DIM = "wrong dimensionality"
TOO_FEW_VOLUMES = "too few volumes"
EXCESSIVE_MOTION = "excessive motion"
EMPTY_REGIONS = "empty regions"
MISSING_AGE = "missing age"
IMPLAUSIBLE_AGE = "implausible age"
DUPLICATE_ID = "duplicate participant ID"
UNREADABLE_TABLE = "unreadable table"
NOT_NORMAL = "not cognitively normal"
EMPTY_IMAGE = "empty image"
SINGULAR = "singular connectivity"
MISMATCHED_GRID = "mismatched grid"
REGISTRATION_FAILED = "registration failed"
INVALID_ID = "invalid participant ID"
MISMATCHED_LENGTH = "mismatched length"
WRONG_SPACE = "wrong space"


class QCError(ValueError):
    """A participant fails a check. ``str()`` names the participant, the file and the reason."""

    def __init__(self, participant: str, file: str | Path | None, reason: str):
        self.participant = participant
        self.file = str(file) if file is not None else ""
        self.reason = one_line(reason)
        where = f" ({self.file})" if self.file else ""
        super().__init__(f"participant {participant}{where}: {reason}")


def one_line(text: str) -> str:
    """``text`` with its line breaks (and tabs) replaced by single spaces."""
    return re.sub(r"\s*[\r\n\t\v\f]+\s*", " ", str(text)).strip()


def category(reason: str) -> str:
    """The counted category of a reason (``"too few volumes: 80 < 100"`` -> ``"too few volumes"``)."""
    return reason.split(":", 1)[0].strip() if reason else ""


def check_age(participant: str, age: float | None, min_age: float, max_age: float,
              file: str | Path | None = None) -> None:
    """Raise :class:`QCError` for a missing or implausible age."""
    if age is None or not np.isfinite(age):
        raise QCError(participant, file, MISSING_AGE)
    if not (min_age <= age <= max_age):
        raise QCError(participant, file, f"{IMPLAUSIBLE_AGE}: {age:g} outside [{min_age:g}, {max_age:g}]")


def summarise(qc: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """QC summary of a ``qc.tsv`` table (columns participant_id, status, reason, age, sex).

    Returns ``(summary, table)``: ``summary`` is JSON-ready (counts by status and by reason
    category, age and sex of included vs excluded); ``table`` has one row per status/category with
    ``n``, ``age_mean``, ``age_sd``, ``age_min``, ``age_max``, ``n_female``, ``n_male``.
    """
    qc = qc.copy()
    qc["category"] = [("included" if s == "included" else category(r))
                      for s, r in zip(qc["status"], qc["reason"].fillna(""))]
    rows = []
    for (status, cat), g in qc.groupby(["status", "category"], sort=True):
        ages = pd.to_numeric(g["age"], errors="coerce").dropna()
        rows.append({
            "status": status, "category": cat, "n": len(g),
            "age_mean": ages.mean() if len(ages) else np.nan,
            "age_sd": ages.std() if len(ages) > 1 else np.nan,
            "age_min": ages.min() if len(ages) else np.nan,
            "age_max": ages.max() if len(ages) else np.nan,
            "n_female": int((g["sex"] == "F").sum()), "n_male": int((g["sex"] == "M").sum()),
        })
    table = pd.DataFrame(rows, columns=["status", "category", "n", "age_mean", "age_sd", "age_min",
                                        "age_max", "n_female", "n_male"])

    def describe(g: pd.DataFrame) -> dict:
        ages = pd.to_numeric(g["age"], errors="coerce").dropna()
        return {
            "n": int(len(g)),
            "age_mean": round(float(ages.mean()), 3) if len(ages) else None,
            "age_sd": round(float(ages.std()), 3) if len(ages) > 1 else None,
            "age_range": [float(ages.min()), float(ages.max())] if len(ages) else None,
            "sex": {k: int(v) for k, v in g["sex"].fillna("n/a").value_counts().sort_index().items()},
        }

    excluded = qc[qc["status"] == "excluded"]
    summary = {
        "n_total": int(len(qc)),
        "n_included": int((qc["status"] == "included").sum()),
        "n_excluded": int(len(excluded)),
        "excluded_by_reason": {k: int(v) for k, v in excluded["category"].value_counts().sort_index().items()},
        "included": describe(qc[qc["status"] == "included"]),
        "excluded": describe(excluded),
    }
    return summary, table


def format_summary(summary: dict) -> str:
    """The QC summary as a few printable lines."""
    inc, exc = summary["included"], summary["excluded"]

    def part(d: dict) -> str:
        age = (f"age {d['age_mean']:.1f} (range {d['age_range'][0]:g}-{d['age_range'][1]:g})"
               if d["age_mean"] is not None else "age n/a")
        sex = ", ".join(f"{k} {v}" for k, v in d["sex"].items()) or "-"
        return f"{d['n']} participants, {age}, sex {sex}"

    lines = [f"QC: {summary['n_included']} included, {summary['n_excluded']} excluded "
             f"of {summary['n_total']}",
             f"  included: {part(inc)}"]
    if summary["n_excluded"]:
        lines.append(f"  excluded: {part(exc)}")
        lines += [f"    {n:5d}  {reason}" for reason, n in summary["excluded_by_reason"].items()]
    if summary.get("motion_not_checked"):
        lines.append(f"  motion QC not run for {summary['motion_not_checked']} included participant(s): "
                     "no fMRIPrep confounds or XCP-D motion file (see the motion_qc column of qc.tsv)")
    return "\n".join(lines)
