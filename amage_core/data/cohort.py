"""The prepared cohort on disk (book/architecture.md section 2): write, load, verify.

    <cohort>/participants.tsv    participant_id, age, sex (M/F), cohort, site, session, [extra]
                                 (included participants only, in array order)
    <cohort>/qc.tsv              participant_id, status (included|excluded), reason, [age, sex, ...]
    <cohort>/regions.tsv         index, name, network, x, y, z   (connectivity order)
    <cohort>/connectivity.npy    float32 (N, R, R)      [fmri]
    <cohort>/t1.npy              float32 (N, D, H, W)   [smri]
    <cohort>/tables.npy          float32 (N, F)         [table] + table_columns.tsv (column)
    <cohort>/manifest.json       format_version, source, config, config_hash, versions,
                                 arrays {name: {shape, dtype, sha256}}, atlas, created, ...

``manifest.json`` is written last: a folder without it is not a (finished) cohort. Arrays are
plain ``.npy`` (no pickle) opened memory-mapped, so a training batch reads only its rows.
"""
from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from amage_core.io import (atomic_write, load_npy, read_json, sha256_file, write_json, write_npy,
                           write_tsv)

FORMAT_VERSION = 1
ARRAYS = {"connectivity": "fmri", "t1": "smri", "tables": "table"}
PARTICIPANT_COLUMNS = ["participant_id", "age", "sex", "cohort", "site", "session"]
REGION_COLUMNS = ["index", "name", "network", "x", "y", "z"]
QC_COLUMNS = ["participant_id", "status", "reason"]
COHORT_FILES = ("participants.tsv", "qc.tsv", "regions.tsv", "table_columns.tsv", "manifest.json",
                "qc_summary.json", "qc_summary.tsv", *(f"{a}.npy" for a in ARRAYS))


@dataclass
class PreparedCohort:
    """A prepared cohort; arrays are read-only memory maps (None when the modality is absent)."""

    root: Path
    participants: pd.DataFrame                     # N rows, PARTICIPANT_COLUMNS + extras
    regions: pd.DataFrame                          # R rows, REGION_COLUMNS
    connectivity: np.ndarray | None                # (N, R, R) float32
    t1: np.ndarray | None                          # (N, D, H, W) float32
    tables: np.ndarray | None                      # (N, F) float32
    table_columns: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    qc: pd.DataFrame | None = None                 # every participant seen, with status and reason

    @property
    def n(self) -> int:
        return len(self.participants)

    @property
    def modalities(self) -> frozenset[str]:
        return frozenset(m for a, m in ARRAYS.items() if getattr(self, a) is not None)

    @property
    def ages(self) -> np.ndarray:
        """(N,) float32 ages in years."""
        return self.participants["age"].to_numpy(dtype=np.float32)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("amage-core", "numpy", "scipy", "pandas", "nibabel", "nilearn", "scikit-learn",
                "monai", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def default_regions(n_regions: int) -> pd.DataFrame:
    return pd.DataFrame({"index": np.arange(n_regions), "name": [f"roi{i}" for i in range(n_regions)],
                         "network": "none", "x": np.nan, "y": np.nan, "z": np.nan})


def _check_participants(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("participant_id", "age", "sex") if c not in df.columns]
    if missing:
        raise ValueError(f"participants table lacks column(s) {missing}")
    df = df.copy()
    for c in ("cohort", "site", "session"):
        if c not in df.columns:
            df[c] = ""
    extras = [c for c in df.columns if c not in PARTICIPANT_COLUMNS]
    return df[PARTICIPANT_COLUMNS + extras].reset_index(drop=True)


def stream_npy(path: Path, shape: tuple[int, ...], rows: Iterable[np.ndarray]) -> None:
    """Write a float32 ``.npy`` of ``shape`` row by row, atomically (:func:`atomic_write`).

    Each row is written with a plain ``write`` after the ``.npy`` header, so memory stays one row:
    a memory map of the output (``open_memmap``) would keep every written page resident in this
    process, and its peak memory would grow by the whole array (205 MB for 2,000 x 160 x 160).
    """
    path, shape = Path(path), tuple(int(s) for s in shape)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": shape}
    with atomic_write(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        n = 0
        for row in rows:
            row = np.asarray(row, dtype=np.float32)
            if n >= shape[0]:
                raise ValueError(f"{path}: expected {shape[0]} rows, got more")
            if row.shape != shape[1:]:
                raise ValueError(f"{path}: row {n} has shape {row.shape}, expected {shape[1:]}")
            fh.write(np.ascontiguousarray(row).data)
            n += 1
        if n != shape[0]:
            raise ValueError(f"{path}: expected {shape[0]} rows, got {n}")


def finalize_cohort(out: Path, participants: pd.DataFrame, regions: pd.DataFrame | None,
                    qc: pd.DataFrame | None, table_columns: list[str] | None,
                    manifest: dict[str, Any]) -> None:
    """Write the tables and, last, ``manifest.json`` with checksums of the arrays already in ``out``."""
    out = Path(out)
    participants = _check_participants(participants)
    arrays = {}
    for name in ARRAYS:
        path = out / f"{name}.npy"
        if path.is_file():
            a = load_npy(path)
            if a.shape[0] != len(participants):
                raise ValueError(f"{path}: {a.shape[0]} rows but {len(participants)} participants")
            arrays[name] = {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": sha256_file(path)}
    write_tsv(out / "participants.tsv", participants)
    if regions is not None:
        write_tsv(out / "regions.tsv", regions[REGION_COLUMNS])
    if table_columns:
        write_tsv(out / "table_columns.tsv", pd.DataFrame({"column": table_columns}))
    if qc is None:
        qc = pd.DataFrame({"participant_id": participants["participant_id"], "status": "included",
                           "reason": "", "age": participants["age"], "sex": participants["sex"]})
    write_tsv(out / "qc.tsv", qc)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        **manifest,
        "arrays": arrays,
        "n_participants": len(participants),
    }
    write_json(out / "manifest.json", manifest)


def write_cohort(out: str | Path, participants: pd.DataFrame, *,
                 connectivity: np.ndarray | None = None, t1: np.ndarray | None = None,
                 tables: np.ndarray | None = None, table_columns: list[str] | None = None,
                 regions: pd.DataFrame | None = None, qc: pd.DataFrame | None = None,
                 config: dict | None = None, source: dict | None = None,
                 atlas: dict | None = None) -> PreparedCohort:
    """Write a prepared cohort from in-memory arrays (test fixtures, small cohorts).

    ``participants``: DataFrame with at least ``participant_id, age, sex`` (``cohort, site,
    session`` added empty when absent; extra columns kept), N rows in array order.
    ``connectivity`` (N, R, R), ``t1`` (N, D, H, W), ``tables`` (N, F) + ``table_columns`` (F
    names): any subset; cast to float32. ``regions`` (R rows, index/name/network/x/y/z) defaults to
    ``roi0..`` without networks or coordinates. ``qc`` defaults to everyone included. ``config``,
    ``source``, ``atlas`` go into the manifest (``config_hash`` is derived from ``config``).
    Returns the cohort as :func:`load_cohort` reads it.
    """
    from amage_core.io import stable_hash

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(participants)
    if connectivity is not None:
        connectivity = np.asarray(connectivity, dtype=np.float32)
        if connectivity.ndim != 3 or connectivity.shape[1] != connectivity.shape[2] or len(connectivity) != n:
            raise ValueError(f"connectivity must be (N={n}, R, R), got {connectivity.shape}")
        if regions is None:
            regions = default_regions(connectivity.shape[1])
        if len(regions) != connectivity.shape[1]:
            raise ValueError(f"{len(regions)} regions but connectivity is {connectivity.shape}")
    if t1 is not None:
        t1 = np.asarray(t1, dtype=np.float32)
        if t1.ndim != 4 or len(t1) != n:
            raise ValueError(f"t1 must be (N={n}, D, H, W), got {t1.shape}")
    if tables is not None:
        tables = np.asarray(tables, dtype=np.float32)
        table_columns = list(table_columns or [f"f{i}" for i in range(tables.shape[1])])
        if tables.ndim != 2 or len(tables) != n or tables.shape[1] != len(table_columns):
            raise ValueError(f"tables must be (N={n}, F={len(table_columns)}), got {tables.shape}")
    for name, arr in (("connectivity", connectivity), ("t1", t1), ("tables", tables)):
        path = out / f"{name}.npy"
        if arr is not None:
            write_npy(path, arr)
        else:
            path.unlink(missing_ok=True)
    config = config or {}
    finalize_cohort(out, participants, regions, qc, table_columns if tables is not None else None, {
        "source": source or {"name": "write_cohort"},
        "config": config,
        "config_hash": stable_hash(config),
        "atlas": atlas or {},
        "modalities": sorted(ARRAYS[a] for a, v in (("connectivity", connectivity), ("t1", t1),
                                                    ("tables", tables)) if v is not None),
    })
    return load_cohort(out)


def verify_arrays(root: Path, manifest: dict) -> None:
    """Recompute every array's sha256; ValueError naming the first damaged file."""
    for name, info in manifest.get("arrays", {}).items():
        path = Path(root) / f"{name}.npy"
        digest = sha256_file(path)
        if digest != info["sha256"]:
            raise ValueError(f"{path}: checksum mismatch (manifest {info['sha256'][:12]}..., file "
                             f"{digest[:12]}...): the array is damaged or was changed; re-run amage prep")


def load_cohort(path: str | Path, verify: bool = False) -> PreparedCohort:
    """Open a prepared cohort; arrays are memory-mapped. ``verify``: recompute checksums first."""
    root = Path(path)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{root}: not a prepared cohort (no manifest.json; an interrupted "
                                "`amage prep` resumes when re-run)")
    manifest = read_json(mpath)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{mpath}: format_version {manifest.get('format_version')} is not "
                         f"{FORMAT_VERSION}; re-run amage prep")
    if verify:
        verify_arrays(root, manifest)
    text = {"participant_id": str, "sex": str, "cohort": str, "site": str, "session": str}
    participants = pd.read_csv(root / "participants.tsv", sep="\t", dtype=text, keep_default_na=False,
                               na_values={"age": [""]})
    participants["age"] = participants["age"].astype(float)
    regions = (pd.read_csv(root / "regions.tsv", sep="\t", dtype={"name": str, "network": str},
                           keep_default_na=False, na_values={c: [""] for c in "xyz"})
               if (root / "regions.tsv").is_file() else pd.DataFrame(columns=REGION_COLUMNS))
    qc = (pd.read_csv(root / "qc.tsv", sep="\t", dtype={"participant_id": str, "reason": str},
                      keep_default_na=False, na_values={"age": [""]})
          if (root / "qc.tsv").is_file() else None)
    arrays: dict[str, np.ndarray | None] = {}
    for name, info in ((n, manifest.get("arrays", {}).get(n)) for n in ARRAYS):
        if info is None:
            arrays[name] = None
            continue
        apath = root / f"{name}.npy"
        try:
            arr = load_npy(apath)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{apath}: cannot open the array ({exc}); re-run amage prep") from exc
        if list(arr.shape) != info["shape"]:
            raise ValueError(f"{apath}: shape {list(arr.shape)} differs from manifest {info['shape']}")
        arrays[name] = arr
    if len(participants) != manifest.get("n_participants", len(participants)):
        raise ValueError(f"{root / 'participants.tsv'}: {len(participants)} rows, manifest says "
                         f"{manifest['n_participants']}")
    columns = (list(pd.read_csv(root / "table_columns.tsv", sep="\t", dtype=str)["column"])
               if arrays["tables"] is not None else [])
    return PreparedCohort(root, participants, regions, arrays["connectivity"], arrays["t1"],
                          arrays["tables"], columns, manifest, qc)


class RowView:
    """Read-only view of some rows of an array: ``view[i]`` is ``array[rows[i]]``; nothing is copied
    until rows are read, so memory-mapped arrays stay on disk."""

    def __init__(self, array: np.ndarray, rows: np.ndarray):
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            return self.array[(self.rows[index[0]], *index[1:])]
        return self.array[self.rows[index]]

    def __iter__(self):
        return (self.array[r] for r in self.rows)

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.array[self.rows])
        return out.astype(dtype) if dtype is not None else out


def select(cohort: PreparedCohort, where: dict) -> PreparedCohort:
    """The participants whose columns equal the given values (compared as text), e.g.
    ``{"sex": "M", "site": "NYU"}``, as a cohort of their own (:func:`subset`). An unknown column,
    or a selection that keeps nobody, is a ``ValueError`` naming it."""
    keep = np.ones(cohort.n, dtype=bool)
    for column, value in where.items():
        if column not in cohort.participants:
            raise ValueError(f"{cohort.root}: no participant column {column!r} to select on "
                             f"(columns: {sorted(cohort.participants.columns)})")
        keep &= (cohort.participants[column].astype(str) == str(value)).to_numpy()
    return subset(cohort, np.flatnonzero(keep), ",".join(f"{k}={v}" for k, v in sorted(where.items())))


def subset(cohort: PreparedCohort, rows: np.ndarray, label: str) -> PreparedCohort:
    """The participants ``rows`` of ``cohort`` as a cohort of their own (arrays are row views).

    ``label`` (e.g. ``"sex=M"``) enters the manifest's ``config_hash``, so runs on a subset are never
    mistaken for runs on the whole cohort."""
    from amage_core.io import stable_hash

    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError(f"{cohort.root}: the subset {label!r} has no participant")
    views = {a: None if getattr(cohort, a) is None else RowView(getattr(cohort, a), rows) for a in ARRAYS}
    manifest = {**cohort.manifest, "subset": label, "n_participants": int(rows.size),
                "config_hash": stable_hash([cohort.manifest.get("config_hash"), label])}
    return PreparedCohort(cohort.root, cohort.participants.iloc[rows].reset_index(drop=True),
                          cohort.regions, views["connectivity"], views["t1"], views["tables"],
                          cohort.table_columns, manifest, cohort.qc)
