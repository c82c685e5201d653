"""One source on disk -> one prepared, quality-checked cohort (``amage prep``).

:func:`prepare_cohort` scans the source (file names and demographics only), then prepares every
participant in parallel (joblib over participants, tqdm progress): fMRI connectivity, T1 grid,
table row, each with its QC. Each participant's result is written atomically to
``<out>/parts/<participant>/`` (its ``record.json`` last), so an interrupted run resumes where
it stopped: finished participants are not recomputed. Once all are done, the arrays are
assembled by streaming the parts, one row at a time, into each ``.npy`` file (plain writes, no
memory map of the output: peak memory does not grow with the cohort), the tables and
``manifest.json`` are written, the parts are removed, and the QC summary is printed and saved
(``qc_summary.json``, ``qc_summary.tsv``).

Checks that need no image (duplicate IDs, missing or implausible age, source-level problems such
as OASIS-3 sessions that are not cognitively normal) run for everyone first; with ``cfg.strict``
the first failing participant, in that order, stops the run with a :class:`QCError` naming the
participant, the file and the reason. ``n_jobs`` uses joblib's current backend, so a cluster
backend applies with ``joblib.parallel_config(backend="dask")`` (or ``"ray"``) around the call.

The configuration (``PrepConfig`` without ``n_jobs``/``strict``, the source, its root and
options, the atlas) is hashed. A finished cohort with the same hash is returned as it is; a
different hash in ``<out>`` (finished or partial) is an error that lists what changed, unless
``rebuild=True`` (``--rebuild``), which deletes the old cohort files first.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amage_core.config import PrepConfig, to_dict
from amage_core.data.cohort import (COHORT_FILES, PARTICIPANT_COLUMNS, PreparedCohort,
                                    finalize_cohort, load_cohort, stream_npy)
from amage_core.data.qc import (MISSING_MODALITY, UNREADABLE_TABLE, QCError, check_age,
                                format_summary, summarise)
from amage_core.data.sources.base import MODALITIES, ParticipantRecord
from amage_core.io import (load_npy, read_json, remove_stale_temporaries, stable_hash, write_json,
                           write_npy, write_tsv)

PARTS = "parts"
STATE = "state.json"
RECORD = "record.json"
UNHASHED = ("n_jobs", "strict")
ARRAY_OF = {"fmri": "connectivity", "smri": "t1", "table": "tables"}


def _modalities(offered: frozenset[str], cfg: PrepConfig, source: str) -> list[str]:
    wanted = set(cfg.modalities) if cfg.modalities else set(offered)
    unknown = wanted - set(MODALITIES)
    if unknown:
        raise ValueError(f"PrepConfig.modalities: unknown {sorted(unknown)}; use {list(MODALITIES)}")
    missing = wanted - offered
    if missing:
        raise ValueError(f"source {source} cannot provide {sorted(missing)} (it offers {sorted(offered)}"
                         + ("; give a structural table" if "table" in missing else "") + ")")
    return [m for m in MODALITIES if m in wanted]


def _prep_key(source: str, root: Path, derivatives: Path | None, cfg: PrepConfig, atlas: str | None,
              modalities: list[str], options: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in to_dict(cfg).items() if k not in UNHASHED}
    return {"source": source, "root": str(Path(root).resolve()),
            "derivatives": str(Path(derivatives).resolve()) if derivatives else None,
            "options": {k: str(v) for k, v in sorted(options.items())},
            "config": config, "atlas": atlas, "modalities": modalities}


def _changes(old: dict, new: dict) -> list[str]:
    out = [k for k in new if k != "config" and old.get(k) != new.get(k)]
    oc, nc = old.get("config", {}), new.get("config", {})
    out += [f"config.{k}: {oc.get(k)!r} -> {nc.get(k)!r}" for k in sorted(set(oc) | set(nc))
            if oc.get(k) != nc.get(k)]
    return out or ["(format)"]


def _clear(out: Path) -> None:
    shutil.rmtree(out / PARTS, ignore_errors=True)
    for name in COHORT_FILES:
        (out / name).unlink(missing_ok=True)


def _check_out(out: Path, key: dict, config_hash: str, rebuild: bool) -> PreparedCohort | None:
    """Return the finished cohort when it is up to date; clear or refuse a different one."""
    manifest_path, state_path = out / "manifest.json", out / PARTS / STATE
    previous = (read_json(manifest_path) if manifest_path.is_file()
                else read_json(state_path) if state_path.is_file() else None)
    if previous is not None:
        if previous.get("config_hash") == config_hash and not rebuild:
            return load_cohort(out) if manifest_path.is_file() else None
        if not rebuild:
            changed = "; ".join(_changes(previous.get("prep_key", {}), key))
            raise ValueError(f"{out}: holds a cohort prepared with another configuration (hash "
                             f"{previous.get('config_hash')} vs {config_hash}; changed: {changed}). "
                             "Re-run with --rebuild (rebuild=True) to replace it, or use another --out")
        _clear(out)
    elif out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in COHORT_FILES and p.name != PARTS]
        if foreign:
            raise ValueError(f"{out}: not empty and not a prepared cohort ({foreign[:3]}); "
                             "choose an empty or new --out folder")
    return None


def _part_done(part: Path, modalities: list[str]) -> bool:
    rec = part / RECORD
    if not rec.is_file():
        return False
    info = read_json(rec)
    return info["status"] == "excluded" or all((part / f"{ARRAY_OF[m]}.npy").is_file() for m in modalities)


def prepare_participant(record: ParticipantRecord, cfg: PrepConfig, atlas, modalities: list[str],
                        n_table_columns: int, part: Path) -> dict[str, Any]:
    """Prepare one participant into ``part/`` (arrays, then ``record.json``); returns the record.

    A failed check gives status ``excluded`` with the reason; with ``cfg.strict`` the
    :class:`QCError` is raised instead (naming participant, file and reason).
    """
    from amage_core.data.fmri import participant_fmri
    from amage_core.data.smri import participant_t1
    from amage_core.data.tables import table_vector

    info: dict[str, Any] = {"key": record.key, "participant_id": record.participant_id,
                            "status": "included", "reason": "", "file": "", "mean_fd": None,
                            "n_volumes": None}
    arrays: dict[str, np.ndarray] = {}
    try:
        if "fmri" in modalities:
            res = participant_fmri(record, atlas, cfg)
            arrays["connectivity"], arrays["empty"] = res.connectivity, res.empty.astype(np.uint8)
            info["mean_fd"] = None if np.isnan(res.mean_fd) else round(res.mean_fd, 5)
            info["n_volumes"] = res.n_volumes
        if "table" in modalities:
            if record.table_row is None:
                raise QCError(record.participant_id, None, f"{MISSING_MODALITY}: no row in the structural table")
            try:
                arrays["tables"] = table_vector(record.table_row, n_table_columns)
            except ValueError as exc:
                raise QCError(record.participant_id, None, f"{UNREADABLE_TABLE}: {exc}") from exc
        if "smri" in modalities:
            arrays["t1"] = participant_t1(record, cfg)
    except QCError as exc:
        if cfg.strict:
            raise
        info.update(status="excluded", reason=exc.reason, file=exc.file)
        arrays = {}
    for name, arr in arrays.items():
        write_npy(part / f"{name}.npy", arr)
    write_json(part / RECORD, info)
    return info


def _participant_row(r: ParticipantRecord) -> dict[str, Any]:
    return {"participant_id": r.participant_id, "age": r.age, "sex": r.sex or "n/a",
            "cohort": r.cohort, "site": r.site, "session": r.session, **r.extra}


def prepare_cohort(source: str, root: str | Path, out: str | Path, cfg: PrepConfig | None = None,
                   derivatives: str | Path | None = None, progress: bool = True,
                   rebuild: bool = False, **source_options: Any) -> PreparedCohort:
    """Prepare ``source`` (camcan | oasis3 | bids | abide) found at ``root`` into ``out``.

    ``source_options`` go to the source's ``scan`` (e.g. ``cognitively_normal=True`` for
    oasis3, ``freesurfer=PATH``/``sub_ids=[...]`` for abide, ``table=PATH`` for bids). Returns
    the prepared cohort (arrays memory-mapped). See the module docstring for resume and rebuild.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from amage_core.data.atlas import load_atlas
    from amage_core.data.smri import registration_identity, registers
    from amage_core.data.sources import scan_source

    cfg = cfg or PrepConfig()
    root, out = Path(root), Path(out)
    if cfg.fc_kind == "tangent":
        raise ValueError("fc_kind='tangent' needs a group reference fitted inside each training fold, "
                         "so it is not a per-participant measure; use 'correlation', 'partial "
                         "correlation' or 'covariance'")
    scan = scan_source(source, root, derivatives, cfg, **source_options)
    if not scan.records:
        raise ValueError(f"{root}: source {source} lists no participants (is its demographics table "
                         "empty?); nothing to prepare")
    modalities = _modalities(scan.modalities, cfg, source)
    atlas = None
    if "fmri" in modalities:
        atlas_name = scan.atlas or cfg.atlas
        if scan.atlas and cfg.atlas != scan.atlas and progress:
            print(f"note: source {source} fixes the atlas to {scan.atlas} (PrepConfig.atlas "
                  f"{cfg.atlas!r} ignored)", file=sys.stderr)
        atlas = load_atlas(atlas_name, cfg.atlas_dir)
    key = _prep_key(source, root, derivatives, cfg, atlas.name if atlas else None, modalities, source_options)
    if "smri" in modalities and any(registers(r, cfg) for r in scan.records):
        key["t1_registration"] = registration_identity()    # the method enters the cohort's identity
    config_hash = stable_hash(key)
    done = _check_out(out, key, config_hash, rebuild)
    if done is not None:
        if progress:
            print(f"{out}: up to date ({done.n} participants)", file=sys.stderr)
        return done
    remove_stale_temporaries(out, COHORT_FILES)      # left by a run killed while assembling
    parts = out / PARTS
    write_json(parts / STATE, {"config_hash": config_hash, "prep_key": key})

    records = scan.records
    todo = []
    for r in records:
        part = parts / r.key
        if _part_done(part, modalities):
            continue
        try:
            if r.problem:
                raise QCError(r.participant_id, r.demographics, r.problem)
            check_age(r.participant_id, r.age, cfg.min_age, cfg.max_age, r.demographics)
        except QCError as exc:
            if cfg.strict:
                raise
            write_json(part / RECORD, {"key": r.key, "participant_id": r.participant_id,
                                       "status": "excluded", "reason": exc.reason, "file": exc.file,
                                       "mean_fd": None, "n_volumes": None})
            continue
        todo.append(r)
    n_cols = len(scan.table_columns)
    jobs = (delayed(prepare_participant)(r, cfg, atlas, modalities, n_cols, parts / r.key) for r in todo)
    runner = Parallel(n_jobs=cfg.n_jobs, return_as="generator_unordered")
    for _ in tqdm(runner(jobs), total=len(todo), disable=not progress or not todo,
                  desc=f"prep {source}", unit="participant"):
        pass
    cohort = _assemble(out, scan, records, modalities, atlas, cfg, key, config_hash)
    if progress:
        print(format_summary(read_json(out / "qc_summary.json")), file=sys.stderr)
    return cohort


def _assemble(out: Path, scan, records: list[ParticipantRecord], modalities: list[str], atlas,
              cfg: PrepConfig, key: dict, config_hash: str) -> PreparedCohort:
    """Stream the parts into the cohort's arrays and tables, then remove the parts."""
    parts = out / PARTS
    infos = [read_json(parts / r.key / RECORD) for r in records]
    included = [r for r, i in zip(records, infos) if i["status"] == "included"]
    regions = atlas.regions.copy() if atlas is not None else None
    keep = None
    if "fmri" in modalities and included:
        empty = np.zeros(atlas.n_regions, dtype=bool)
        for r in included:
            empty |= load_npy(parts / r.key / "empty.npy", mmap=False).astype(bool)
        if cfg.empty_regions == "drop-region" and empty.any():
            keep = ~empty
            regions = regions[keep].reset_index(drop=True)
            regions["index"] = np.arange(len(regions))
    n = len(included)
    for m in modalities:
        name = ARRAY_OF[m]
        if not included:
            continue
        first = load_npy(parts / included[0].key / f"{name}.npy")
        shape = first.shape if keep is None or name != "connectivity" else (int(keep.sum()),) * 2

        def rows(name=name):
            for r in included:
                a = load_npy(parts / r.key / f"{name}.npy")
                yield a[np.ix_(keep, keep)] if keep is not None and name == "connectivity" else a

        stream_npy(out / f"{name}.npy", (n, *shape), rows())
    for name in ARRAY_OF.values():
        if not included or name not in [ARRAY_OF[m] for m in modalities]:
            (out / f"{name}.npy").unlink(missing_ok=True)
    participants = pd.DataFrame([_participant_row(r) for r in included])
    if participants.empty:
        participants = pd.DataFrame(columns=PARTICIPANT_COLUMNS)
    qc = pd.DataFrame([{"participant_id": r.participant_id, "status": i["status"], "reason": i["reason"],
                        "session": r.session, "age": r.age, "sex": r.sex or "n/a",
                        "mean_fd": i["mean_fd"], "n_volumes": i["n_volumes"], "file": i["file"]}
                       for r, i in zip(records, infos)])
    if not qc.empty:
        qc["n_volumes"] = qc["n_volumes"].astype("Int64")
    summary, table = summarise(qc)
    if keep is not None:
        summary["regions_dropped"] = list(atlas.regions["name"][~keep])
    finalize_cohort(out, participants, regions, qc, scan.table_columns if "table" in modalities else None, {
        "source": {"name": scan.name, "root": key["root"], "derivatives": key["derivatives"],
                   "options": key["options"], "notes": scan.notes},
        "config": key["config"], "config_hash": config_hash, "prep_key": key,
        "atlas": ({"name": atlas.name, "n_regions": len(regions), "kind": atlas.kind,
                   "networks": [n for n in dict.fromkeys(regions["network"]) if n != "none"]}
                  if atlas is not None else {}),
        "modalities": modalities if included else [],
        "qc": {"n_included": summary["n_included"], "n_excluded": summary["n_excluded"]},
    })
    write_json(out / "qc_summary.json", summary)
    write_tsv(out / "qc_summary.tsv", table)
    shutil.rmtree(parts, ignore_errors=True)
    return load_cohort(out)
