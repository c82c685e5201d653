"""One source on disk -> one prepared, quality-checked cohort (``amage prep``).

:func:`prepare_cohort` scans the source (file names and demographics only), then prepares every
participant in parallel (joblib over participants, tqdm progress): fMRI connectivity, T1 grid,
table row, each with its QC. Each participant's result is written atomically to
``<out>/parts/<participant>/`` (its ``record.json`` last), so an interrupted run resumes where
it stopped: finished participants are not recomputed. Once all are done, the arrays are
assembled by streaming the parts, one row at a time, into each ``.npy`` file (plain writes, no
memory map of the output: peak memory does not grow with the cohort), the tables and
``manifest.json`` are written, the parts are removed, and the QC summary is logged (INFO, this
module's logger; ``amage prep`` shows it) and saved (``qc_summary.json``, ``qc_summary.tsv``).

Checks that need no image (duplicate IDs, missing or implausible age, source-level problems such
as OASIS-3 sessions that are not cognitively normal) run for everyone first; with ``cfg.strict``
the first failing participant, in that order, stops the run with a :class:`QCError` naming the
participant, the file and the reason. ``n_jobs`` uses joblib's current backend, so a cluster
backend applies with ``joblib.parallel_config(backend="dask")`` (or ``"ray"``) around the call.

The configuration (``PrepConfig`` without ``n_jobs``/``strict``, the source, its root and
options, the atlas) is hashed. A finished cohort with the same hash is returned as it is; a
different hash in ``<out>`` (finished or partial) is an error that lists what changed, unless
``rebuild=True`` (``--rebuild``), which deletes the old cohort files first. The library's T1
methods are part of the hash too (:data:`METHOD_KEYS`: the registration and the MNI-space check
with their settings); a cohort that differs only there is prepared again, with a line saying so.

The input files are part of a cohort's identity too: each participant's demographics row and the
path, size and modification time of every file it is prepared from are fingerprinted (recorded in
each part's ``record.json`` and in ``manifest.json``). A finished cohort whose inputs changed since
(an edited age, a replaced T1, a deleted TSV) is prepared again, and a resumed run redoes the
participants whose inputs changed.

Checks before any participant is prepared (each a ``ValueError``, one line, exit code 2 from
``amage prep``): the configuration's values (:func:`check_config`), the atlas against what the
derivatives hold (XCP-D time series only for other atlases: which ones there are and how to choose
one; regions without coordinates where BOLD is sampled in spheres). Participant IDs that are not
BIDS labels (``sub-`` + letters and digits) are excluded as ``invalid participant ID`` and never used
in a path. A preparation that ends with nobody included is an error (the cohort files and
``qc.tsv`` are kept to read why). A lock file (``.prep.lock``) refuses a second preparation
into the same ``out`` while one is running.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amage_core.config import PrepConfig, result_settings
from amage_core.data.cohort import (COHORT_FILES, PARTICIPANT_COLUMNS, PreparedCohort,
                                    finalize_cohort, load_cohort, stream_npy)
from amage_core.data.qc import (INVALID_ID, MISSING_MODALITY, UNREADABLE_TABLE, QCError, check_age,
                                format_summary, summarise)
from amage_core.data.sources.base import MODALITIES, ParticipantRecord
from amage_core.io import (load_npy, read_json, remove_stale_temporaries, stable_hash, write_json,
                           write_npy, write_tsv)
from amage_core.parallel import local_process_backend, orphan_safe

logger = logging.getLogger(__name__)
PARTS = "parts"
STATE = "state.json"
RECORD = "record.json"
ARRAY_OF = {"fmri": "connectivity", "smri": "t1", "table": "tables"}
LOCK = ".prep.lock"
INPUT_FIELDS = ("t1_mni", "brain_mask", "t1_raw", "timeseries", "bold", "confounds")
# Entries of a cohort's identity that are the library's T1 methods, not the user's settings: a cohort
# prepared by another version of them is prepared again, not refused as "another configuration".
METHOD_KEYS = ("t1_registration", "t1_space_check")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")


def check_config(cfg: PrepConfig, modalities: list[str]) -> None:
    """Refuse values that would exclude every participant for the same reason (or skip a check)."""
    def bad(field: str, why: str):
        return ValueError(f"PrepConfig.{field} = {getattr(cfg, field)!r}: {why}")

    if not (math.isfinite(cfg.min_age) and math.isfinite(cfg.max_age) and cfg.min_age < cfg.max_age):
        raise bad("min_age", f"needs finite min_age < max_age (max_age {cfg.max_age!r})")
    if cfg.n_jobs == 0:
        raise bad("n_jobs", "0 runs nothing; use 1 (serial), N or -1 (all cores)")
    if "fmri" in modalities:
        if math.isnan(cfg.fd_threshold) or cfg.fd_threshold < 0:
            raise bad("fd_threshold", "the mean framewise displacement limit must be a number >= 0 mm "
                                      "(.inf: no motion exclusion)")
        if cfg.min_volumes < 3:
            raise bad("min_volumes", "a correlation needs at least 3 volumes")
    if "smri" in modalities:
        shape = tuple(cfg.t1_shape)
        if min(shape) < 4:
            raise bad("t1_shape", "every side of the T1 grid needs at least 4 voxels")
        if cfg.t1_crop_margin < 0 or 2 * cfg.t1_crop_margin >= min(shape) - 1:
            raise bad("t1_crop_margin", f"needs 0 <= margin and 2 x margin < {min(shape) - 1} "
                                        f"(the smallest side of t1_shape {list(shape)}, less one)")
        lo, hi = cfg.t1_percentiles
        if not (0 <= lo < hi <= 100):
            raise bad("t1_percentiles", "needs 0 <= low < high <= 100")


def _id_problem(r: ParticipantRecord) -> str | None:
    """Why a record's participant/session label cannot be used (None when it is a BIDS label)."""
    from amage_core.data.sources.base import label_problem

    why = label_problem(r.participant_id) or (label_problem(r.session, "ses-") if r.session else None)
    return f"{INVALID_ID}: {why}" if why else None


def part_dir(parts: Path, r: ParticipantRecord) -> Path:
    """The record's parts folder: its key when that is a plain, short name; else a hash of it (an ID
    such as ``sub-1/../sub-2`` or 300 characters long never becomes a path)."""
    if _SAFE_KEY.fullmatch(r.key):
        return parts / r.key
    return parts / f"id-{hashlib.sha256(r.key.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def input_fingerprint(r: ParticipantRecord) -> str:
    """What a participant is prepared from: demographics and each file's path, size and mtime."""
    files = {}
    for name in INPUT_FIELDS:
        path = getattr(r, name)
        if path is None:
            files[name] = None
            continue
        try:
            st = os.stat(path)
            files[name] = [str(path), st.st_size, st.st_mtime_ns]
        except OSError as exc:
            files[name] = [str(path), f"unreadable: {exc.strerror}"]
    return stable_hash({"row": _participant_row(r), "problem": r.problem, "files": files,
                        "table_row": list(r.table_row) if r.table_row is not None else None}, 16)


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``<out>/.prep.lock`` (an advisory lock, released when the process ends, even killed)."""
    import errno
    import fcntl

    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(out))
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{out}: another preparation is writing here (it holds {path}); wait for "
                             "it to finish or use another --out") from None
        yield
    finally:
        fh.close()


def _resolve_atlas(scan, cfg: PrepConfig, source: str, root: Path, derivatives, progress: bool):
    """The atlas of the fMRI connectivity, checked against what the derivatives hold."""
    from collections import Counter

    from amage_core.data.atlas import load_atlas
    from amage_core.data.sources.derivatives import DerivativeDirs, locate_derivatives, xcpd_atlases

    if scan.atlas:
        if cfg.atlas != scan.atlas and progress:
            logger.info(f"note: source {source} fixes the atlas to {scan.atlas} (PrepConfig.atlas "
                        f"{cfg.atlas!r} ignored)")
        return load_atlas(scan.atlas, cfg.atlas_dir)
    dirs = locate_derivatives(derivatives, root) if source != "abide" else DerivativeDirs()
    atlas = load_atlas(cfg.atlas, cfg.atlas_dir, xcpd_dirs=dirs)
    records = [r for r in scan.records if r.problem is None]
    use_tsv = cfg.fmri_input in ("auto", "xcpd")
    use_bold = cfg.fmri_input in ("auto", "bold")
    with_ts = sum(r.timeseries is not None for r in records) if use_tsv else 0
    bold = [r for r in records if r.bold is not None and use_bold and not (use_tsv and r.timeseries is not None)]
    others = Counter(a for r in records for a in r.xcpd_atlases)
    if records and not with_ts and not bold and others:
        shipped = sorted(a.name for a in xcpd_atlases(dirs).values())
        listed = ", ".join(f"{a} ({n})" for a, n in sorted(others.items()))
        raise ValueError(
            f"{root}: the XCP-D time series are for atlas(es) {listed} (participants with each), none for "
            f"atlas {cfg.atlas!r}; choose one with --atlas NAME (profile prep.atlas), e.g. --atlas "
            f"{max(others, key=others.get)}"
            + (f" (XCP-D's own atlas files found for {shipped}: labels, networks and coordinates are "
               "read from them)" if shipped else "; a regions TSV with its column names gives its labels"))
    if bold and atlas.kind == "coords" and not np.isfinite(atlas.coords).all():
        missing = list(atlas.regions["name"][~np.isfinite(atlas.coords).all(axis=1)])
        raise ValueError(
            f"atlas {atlas.name}: {len(missing)} region(s) without coordinates ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}), but {len(bold)} participant(s) have fMRIPrep BOLD, "
            "sampled in spheres around each region's coordinates: give a regions TSV with x, y, z for "
            "every region, use an atlas with a label image, or fmri_input='xcpd'")
    return atlas


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
    config = result_settings(cfg)          # n_jobs and strict change no prepared cohort
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


def _without_methods(key: dict) -> dict:
    return {k: v for k, v in key.items() if k not in METHOD_KEYS}


def _clear(out: Path) -> None:
    shutil.rmtree(out / PARTS, ignore_errors=True)
    for name in COHORT_FILES:
        (out / name).unlink(missing_ok=True)


def _check_out(out: Path, key: dict, config_hash: str, rebuild: bool, inputs: dict[str, str],
               progress: bool) -> PreparedCohort | None:
    """Return the finished cohort when it is up to date; clear or refuse a different one."""
    manifest_path, state_path = out / "manifest.json", out / PARTS / STATE
    previous = (read_json(manifest_path) if manifest_path.is_file()
                else read_json(state_path) if state_path.is_file() else None)
    if previous is not None:
        if previous.get("config_hash") == config_hash and not rebuild:
            if not manifest_path.is_file():
                return None                 # a partial run: resumed part by part (inputs checked per part)
            old = previous.get("inputs") or {}
            if old == inputs:
                return load_cohort(out)
            changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
            if progress:
                logger.info(f"{out}: inputs changed since it was prepared ({len(changed)} participant(s), "
                            f"e.g. {', '.join(changed[:3]) or 'the record of its inputs'}); preparing it again")
            _clear(out)
            return None
        old_key = previous.get("prep_key", {})
        methods = [k for k in METHOD_KEYS if old_key.get(k) != key.get(k)]
        if not rebuild and methods and stable_hash(_without_methods(old_key)) == stable_hash(_without_methods(key)):
            if progress:
                logger.info(f"{out}: prepared by another version of the T1 checks ({', '.join(methods)}); "
                            "preparing it again")
            _clear(out)
            return None
        if not rebuild:
            changed = "; ".join(_changes(old_key, key))
            raise ValueError(f"{out}: holds a cohort prepared with another configuration (hash "
                             f"{previous.get('config_hash')} vs {config_hash}; changed: {changed}). "
                             "Re-run with --rebuild (rebuild=True) to replace it, or use another --out")
        _clear(out)
    elif out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in COHORT_FILES and p.name not in (PARTS, LOCK)]
        if foreign:
            raise ValueError(f"{out}: not empty and not a prepared cohort ({foreign[:3]}); "
                             "choose an empty or new --out folder")
    return None


def _part_done(part: Path, modalities: list[str], fingerprint: str) -> bool:
    rec = part / RECORD
    if not rec.is_file():
        return False
    info = read_json(rec)
    if info.get("inputs") != fingerprint:
        return False
    return info["status"] == "excluded" or all((part / f"{ARRAY_OF[m]}.npy").is_file() for m in modalities)


def prepare_participant(record: ParticipantRecord, cfg: PrepConfig, atlas, modalities: list[str],
                        n_table_columns: int, part: Path, fingerprint: str = "") -> dict[str, Any]:
    """Prepare one participant into ``part/`` (arrays, then ``record.json``); returns the record.

    A failed check gives status ``excluded`` with the reason; with ``cfg.strict`` the
    :class:`QCError` is raised instead (naming participant, file and reason). ``fingerprint``
    (:func:`input_fingerprint`) is recorded, so that a resumed run redoes a participant whose inputs
    changed.
    """
    from amage_core.data.fmri import participant_fmri
    from amage_core.data.smri import participant_t1
    from amage_core.data.tables import table_vector

    info: dict[str, Any] = {"key": record.key, "participant_id": record.participant_id,
                            "status": "included", "reason": "", "file": "", "mean_fd": None,
                            "n_volumes": None, "motion_qc": "", "fmri_input": "", "fmri_file": "",
                            "inputs": fingerprint}
    arrays: dict[str, np.ndarray] = {}
    try:
        if "fmri" in modalities:
            res = participant_fmri(record, atlas, cfg)
            arrays["connectivity"], arrays["empty"] = res.connectivity, res.empty.astype(np.uint8)
            info["mean_fd"] = None if np.isnan(res.mean_fd) else round(res.mean_fd, 5)
            info["n_volumes"] = res.n_volumes
            info.update(motion_qc=res.motion_qc, fmri_input=res.source, fmri_file=str(res.file))
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

    ``progress``: a progress bar, and INFO messages on this module's logger (the cohort is up to
    date or prepared again, the QC summary); the library configures no handler for them.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from amage_core.data.smri import registration_identity, registers, space_check_identity
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
    for r in scan.records:
        problem = _id_problem(r)
        if problem is not None:
            r.problem = problem                  # its files (found by a path built from the ID) never opened
    modalities = _modalities(scan.modalities, cfg, source)
    check_config(cfg, modalities)
    atlas = _resolve_atlas(scan, cfg, source, root, derivatives, progress) if "fmri" in modalities else None
    key = _prep_key(source, root, derivatives, cfg, atlas.name if atlas else None, modalities, source_options)
    if atlas is not None and atlas.files:
        from amage_core.io import sha256_file

        key["atlas_files"] = {f: sha256_file(f) for f in atlas.files}
    if "smri" in modalities and any(registers(r, cfg) for r in scan.records):
        key["t1_registration"] = registration_identity()    # the method enters the cohort's identity
    if "smri" in modalities and cfg.t1_source != "resize" and any(
            r.t1_mni is not None and not registers(r, cfg) for r in scan.records):
        key["t1_space_check"] = space_check_identity()     # which MNI T1s are kept, likewise
    config_hash = stable_hash(key)
    records = scan.records
    inputs = {r.key: input_fingerprint(r) for r in records}
    with _locked(out):
        done = _check_out(out, key, config_hash, rebuild, inputs, progress)
        if done is not None:
            if progress:
                logger.info(f"{out}: up to date ({done.n} participants)")
            return _refuse_empty(done, out)
        remove_stale_temporaries(out, COHORT_FILES)      # left by a run killed while assembling
        parts = out / PARTS
        write_json(parts / STATE, {"config_hash": config_hash, "prep_key": key})

        todo = []
        for r in records:
            part = part_dir(parts, r)
            if _part_done(part, modalities, inputs[r.key]):
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
                                           "mean_fd": None, "n_volumes": None, "inputs": inputs[r.key]})
                continue
            todo.append(r)
        n_cols = len(scan.table_columns)
        # workers that exit when this process is killed (else they go on writing parts/ as orphans)
        watched = (partial(orphan_safe, os.getpid(), prepare_participant) if local_process_backend()
                   else prepare_participant)
        jobs = (delayed(watched)(r, cfg, atlas, modalities, n_cols, part_dir(parts, r), inputs[r.key])
                for r in todo)
        runner = Parallel(n_jobs=cfg.n_jobs, return_as="generator_unordered")
        for _ in tqdm(runner(jobs), total=len(todo), disable=not progress or not todo,
                      desc=f"prep {source}", unit="participant"):
            pass
        cohort = _assemble(out, scan, records, modalities, atlas, cfg, key, config_hash, inputs)
    if progress:
        logger.info(format_summary(read_json(out / "qc_summary.json")))
    return _refuse_empty(cohort, out)


def _refuse_empty(cohort: PreparedCohort, out: Path) -> PreparedCohort:
    """A cohort with nobody included is an error, in one line saying why everyone was excluded."""
    if cohort.n:
        return cohort
    summary = read_json(out / "qc_summary.json") if (out / "qc_summary.json").is_file() else {}
    reasons = summary.get("excluded_by_reason", {})
    counts = "; ".join(f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    example = ""
    if cohort.qc is not None and len(cohort.qc):
        first = cohort.qc.iloc[0]
        example = f"; e.g. {first['participant_id']}: {first['reason']}"
    raise ValueError(f"{out}: no participant included ({summary.get('n_total', 0)} excluded: "
                     f"{counts or 'none listed'}{example[:300]}); see {out / 'qc.tsv'}")


def _assemble(out: Path, scan, records: list[ParticipantRecord], modalities: list[str], atlas,
              cfg: PrepConfig, key: dict, config_hash: str, inputs: dict[str, str]) -> PreparedCohort:
    """Stream the parts into the cohort's arrays and tables, then remove the parts."""
    parts = out / PARTS
    infos = [read_json(part_dir(parts, r) / RECORD) for r in records]
    included = [r for r, i in zip(records, infos) if i["status"] == "included"]
    regions = atlas.regions.copy() if atlas is not None else None
    keep = None
    if "fmri" in modalities and included:
        empty = np.zeros(atlas.n_regions, dtype=bool)
        for r in included:
            empty |= load_npy(part_dir(parts, r) / "empty.npy", mmap=False).astype(bool)
        if cfg.empty_regions == "drop-region" and empty.any():
            keep = ~empty
            regions = regions[keep].reset_index(drop=True)
            regions["index"] = np.arange(len(regions))
    n = len(included)
    for m in modalities:
        name = ARRAY_OF[m]
        if not included:
            continue
        first = load_npy(part_dir(parts, included[0]) / f"{name}.npy")
        shape = first.shape if keep is None or name != "connectivity" else (int(keep.sum()),) * 2

        def rows(name=name):
            for r in included:
                a = load_npy(part_dir(parts, r) / f"{name}.npy")
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
                        "mean_fd": i["mean_fd"], "n_volumes": i["n_volumes"],
                        "motion_qc": i.get("motion_qc", ""), "fmri_input": i.get("fmri_input", ""),
                        "fmri_file": i.get("fmri_file", ""), "file": i["file"]}
                       for r, i in zip(records, infos)])
    if not qc.empty:
        qc["n_volumes"] = qc["n_volumes"].astype("Int64")
    summary, table = summarise(qc)
    if keep is not None:
        summary["regions_dropped"] = list(atlas.regions["name"][~keep])
    if "fmri" in modalities and included:
        unchecked = [i for i in infos if i["status"] == "included" and i.get("motion_qc", "") != "checked"]
        summary["motion_not_checked"] = len(unchecked)
        summary["fmri_inputs"] = {k: int(v) for k, v in
                                  pd.Series([i.get("fmri_input", "") for i in infos if i["status"] == "included"])
                                  .value_counts().sort_index().items()}
    finalize_cohort(out, participants, regions, qc, scan.table_columns if "table" in modalities else None, {
        "source": {"name": scan.name, "root": key["root"], "derivatives": key["derivatives"],
                   "options": key["options"], "notes": scan.notes},
        "config": key["config"], "config_hash": config_hash, "prep_key": key,
        "atlas": ({"name": atlas.name, "n_regions": len(regions), "kind": atlas.kind,
                   "networks": [n for n in dict.fromkeys(regions["network"]) if n != "none"]}
                  if atlas is not None else {}),
        "modalities": modalities if included else [],
        "qc": {"n_included": summary["n_included"], "n_excluded": summary["n_excluded"],
               "motion_not_checked": summary.get("motion_not_checked", 0)},
        "inputs": inputs,
    })
    write_json(out / "qc_summary.json", summary)
    write_tsv(out / "qc_summary.tsv", table)
    shutil.rmtree(parts, ignore_errors=True)
    return load_cohort(out)
