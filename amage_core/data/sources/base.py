"""Participant records: what every source hands the preparation step.

A source turns a root folder into a :class:`SourceScan`: one :class:`ParticipantRecord` per
participant (or per session) with demographics and the paths of what was found, plus what the
source can offer (modalities, structural table columns, a fixed atlas). Sources only look at
names on disk and demographic tables; they never open images (that happens in parallel later).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

MODALITIES = ("fmri", "smri", "table")

# Numeric sex codes of each dataset (all three use 1 = male, 2 = female).
SEX_CODES_1M_2F = {1: "M", 2: "F"}
_SEX_TEXT = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}


def normalise_sex(value: Any, codes: dict[int, str] = SEX_CODES_1M_2F) -> str | None:
    """``"M"``/``"F"`` from M/F, male/female (any case) or a numeric code (``codes``); else None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    if text in _SEX_TEXT:
        return _SEX_TEXT[text]
    try:
        number = float(text)
    except ValueError:
        return None
    return codes.get(int(number)) if number.is_integer() else None


def to_age(value: Any) -> float | None:
    """A float age, or None when missing or not a number."""
    try:
        age = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(age) else age


@dataclass
class ParticipantRecord:
    """One participant (one session) as found on disk. Paths are None where nothing was found."""

    participant_id: str                    # sub-<label>
    age: float | None
    sex: str | None                        # "M", "F" or None (unknown)
    cohort: str
    site: str = ""
    session: str = ""                      # ses-<label> or ""
    t1_mni: Path | None = None             # fMRIPrep space-MNI152NLin2009cAsym desc-preproc T1w
    brain_mask: Path | None = None         # fMRIPrep MNI desc-brain_mask
    t1_raw: Path | None = None             # native-space T1w from the raw BIDS
    timeseries: Path | None = None         # XCP-D time-series TSV (or an ABIDE .1D file)
    bold: Path | None = None               # fMRIPrep preprocessed BOLD in MNI space
    confounds: Path | None = None          # fMRIPrep confounds (or XCP-D motion) TSV
    raw_bold: Path | None = None           # raw BOLD (never used: needs fMRIPrep first)
    table_row: tuple[float, ...] | None = None   # (F,) structural measures, in SourceScan.table_columns order
    extra: dict[str, Any] = field(default_factory=dict)  # extra participants.tsv columns (dx, SITE_ID, ...)
    problem: str | None = None             # a reason found by the source (excluded without opening files)
    xcpd_atlases: tuple[str, ...] = ()     # atlases of the XCP-D TSVs found (to explain a mismatch)
    demographics: Path | None = None       # the file the age/sex came from (for error messages)

    @property
    def key(self) -> str:
        """Unique name of this record (participant, plus session when there is one)."""
        return f"{self.participant_id}_{self.session}" if self.session else self.participant_id


@dataclass
class SourceScan:
    """Everything a source found under its root."""

    name: str                               # camcan | oasis3 | bids | abide
    records: list[ParticipantRecord]
    modalities: frozenset[str]              # what this source can provide
    table_columns: list[str] = field(default_factory=list)
    atlas: str | None = None                # an atlas the source fixes (ABIDE: cc200), else None
    notes: list[str] = field(default_factory=list)


def mark_duplicates(records: list[ParticipantRecord], file: Path | None) -> None:
    """Give every record whose (participant, session) appears more than once a duplicate problem."""
    from amage_core.data.qc import DUPLICATE_ID

    counts = pd.Series([r.key for r in records]).value_counts()
    for r in records:
        if counts[r.key] > 1 and r.problem is None:
            where = f" in {file}" if file else ""
            r.problem = f"{DUPLICATE_ID}: {r.key} appears {counts[r.key]} times{where}"


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or TSV (by extension) with every column as text; errors name the file."""
    sep = "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=True)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as "
                         "UTF-8, e.g. `iconv -f GBK -t UTF-8` for a GBK file") from exc
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: cannot read the table ({exc})") from exc


def check_sex_codes(values, path: Path) -> None:
    """Refuse numeric sex codes other than 1 (male) and 2 (female): a file holding others (0/1,
    1/0, ...) follows a convention that cannot be known, and reading its 1 as male could be wrong."""
    odd = set()
    for value in values:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            continue
        if not math.isnan(number) and number not in (1.0, 2.0):
            odd.add(text)
    if odd:
        raise ValueError(f"{path}: sex column holds numeric code(s) {sorted(odd)}; only 1 = male and "
                         "2 = female are read as numbers (this file's coding cannot be known): write M/F")


def require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)[:12]}")


def with_prefix(label: str, prefix: str = "sub-") -> str:
    label = str(label).strip()
    return label if label.startswith(prefix) else f"{prefix}{label}"
