"""Structural tables: FreeSurfer-style regional measures as an alternative structural input.

A table has one row per participant, an identifier column and one numeric column per measure
(regional surface area, grey-matter volume, thickness, ...). Demographic columns (age, sex, site,
diagnosis, IQ, ...) are never features: they are dropped by name, so age cannot leak into the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DEMOGRAPHIC_COLUMNS = frozenset({
    "age", "sex", "gender", "site", "session", "dx", "age_at_scan", "fiq", "viq", "piq",
    "dx_group", "dsm_iv_tr", "site_id", "sub_id", "handedness", "hand", "cohort",
})


@dataclass
class FeatureTable:
    """``values`` (N, F) float32, one row per ``ids`` entry, one column per ``columns`` entry."""

    path: Path
    ids: list[str]
    columns: list[str]
    values: np.ndarray

    def row(self, participant: str) -> tuple[float, ...] | None:
        """(F,) measures of one participant, or None when the table has no row for them."""
        try:
            i = self._index[participant]
        except KeyError:
            return None
        return tuple(float(v) for v in self.values[i])

    def __post_init__(self) -> None:
        self._index = {p: i for i, p in enumerate(self.ids)}


def load_feature_table(path: str | Path, id_column: str,
                       id_map=None, drop: tuple[str, ...] = ()) -> FeatureTable:
    """Read a CSV/TSV of regional measures keyed by ``id_column``.

    ``id_map`` (optional callable) turns the table's identifiers into participant IDs; ``drop``
    names more columns to ignore besides :data:`DEMOGRAPHIC_COLUMNS`. Every remaining column must
    be numeric; duplicate identifiers are an error (both name the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: structural table not found")
    sep = "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype={id_column: str})   # keep leading zeros
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the structural table ({exc})") from exc
    if id_column not in df.columns:
        raise ValueError(f"{path}: no identifier column {id_column!r}; found {list(df.columns)[:10]}")
    ids = [str(v) for v in df[id_column]]
    if id_map is not None:
        ids = [id_map(v) for v in ids]
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if len(dup):
        raise ValueError(f"{path}: duplicate identifier(s) {list(dup[:5])} in column {id_column!r}")
    skip = DEMOGRAPHIC_COLUMNS | {c.lower() for c in drop} | {id_column.lower()}
    columns = [c for c in df.columns if str(c).lower() not in skip]
    if not columns:
        raise ValueError(f"{path}: no measure columns left after dropping identifiers and demographics")
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise ValueError(f"{path}: non-numeric measure column(s) {bad[:5]} (add them to drop=...)")
    values = df[columns].to_numpy(dtype=np.float32)
    return FeatureTable(path, ids, [str(c) for c in columns], values)


def table_vector(row: tuple[float, ...], n_columns: int) -> np.ndarray:
    """(F,) float32 measures of one participant; raises ValueError when incomplete or non-finite."""
    vec = np.asarray(row, dtype=np.float32)
    if vec.shape != (n_columns,):
        raise ValueError(f"expected {n_columns} measures, got {vec.shape[0]}")
    bad = np.flatnonzero(~np.isfinite(vec))
    if bad.size:
        raise ValueError(f"{bad.size} measure(s) missing or not finite")
    return vec
