"""Participant records: what every source hands the preparation step.

A source turns a root folder into a :class:`SourceScan`: one :class:`ParticipantRecord` per
participant (or per session) with demographics and the paths of what was found, plus what the
source can offer (modalities, structural table columns, a fixed atlas). Sources only look at
names on disk and demographic tables; they never open images (that happens in parallel later).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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


MISSING_TEXT = {"", "n/a", "nan"}


def text_or_empty(value: Any) -> str:
    """A cell as stripped text, ``""`` for blank / ``n/a`` / NaN (``NA`` is kept: it can be a label)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value).strip()
    return "" if text.lower() in MISSING_TEXT else text


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or TSV (by extension) with every cell as text, exactly as written (``NA`` stays ``NA``:
    an ID, not a missing value; blank cells are ``""``); errors name the file.

    ``index_col=False``: a delimiter at the end of each row (a trailing tab) does not shift the columns
    (pandas would otherwise take the first column as the row index)."""
    sep = "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","
    if not Path(path).is_file():
        raise ValueError(f"{path}: not a regular file (a FIFO, device or folder?)" if Path(path).exists()
                         else f"{path}: not found")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, index_col=False)
        if caught:       # rows longer than the header: fine when the extra fields are empty (trailing tabs)
            width = len(df.columns)
            raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, header=None, skiprows=1,
                              names=list(range(width + 64)), index_col=False)
            extra = raw.iloc[:, width:]
            if (extra != "").to_numpy().any():
                row = int(np.flatnonzero((extra != "").to_numpy().any(axis=1))[0]) + 2
                raise ValueError(f"{path}: line {row} has more fields than the header's {width} "
                                 f"({list(df.columns)[:8]}); the columns would be misread")
        return df
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


_LABEL = re.compile(r"[A-Za-z0-9]{1,100}")


def label_problem(value: str, prefix: str = "sub-") -> str | None:
    """Why ``value`` (``sub-<label>`` / ``ses-<label>``) is not a usable BIDS label, else None.

    Letters and digits only (a ``/``, ``..`` or space would make a path of it), at most 100 of them
    (file names are built from it, and file systems stop at 255 bytes)."""
    label = value[len(prefix):] if value.startswith(prefix) else None
    if label is None or not _LABEL.fullmatch(label):
        shown = repr(value[:60]) + ("..." if len(value) > 60 else "")
        if label is not None and len(label) > 100 and label.isalnum() and label.isascii():
            return f"{shown} is {len(label)} characters long (at most 100: file names are built from it)"
        return f"{shown} is not '{prefix}' and letters and digits only"
    return None


def with_prefix(label: str, prefix: str = "sub-") -> str:
    label = str(label).strip()
    return label if label.startswith(prefix) else f"{prefix}{label}"
