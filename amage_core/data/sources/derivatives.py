"""Finding a participant's files in fMRIPrep and XCP-D derivatives (both XCP-D namings).

fMRIPrep (``space-MNI152NLin2009cAsym``):
    sub-X[/ses-Y]/anat/sub-X[_ses-Y]_space-MNI152NLin2009cAsym[_res-N]_desc-preproc_T1w.nii.gz (+ desc-brain_mask)
    sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-rest[_run-N]_space-MNI152NLin2009cAsym[_res-N]_desc-preproc_bold.nii.gz
    sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-rest[_run-N]_desc-confounds_timeseries.tsv
XCP-D, newer and older namings (one column per region, one row per volume):
    ..._seg-<Atlas>_stat-mean_timeseries.tsv
    ..._atlas-<Atlas>_timeseries.tsv      (and the intermediate ..._atlas-<Atlas>_stat-mean_timeseries.tsv)
    ..._motion.tsv                         (framewise_displacement, used when fMRIPrep confounds are absent)
XCP-D's atlases (labels of the time-series columns, the label image), searched under each XCP-D
folder's ``atlases/`` and ``sourcedata/atlases/`` (any depth: ``atlas-<A>/`` or ``tpl-<T>/``):
    [tpl-<T>_]atlas-<A>[_space-<S>][_res-<N>][_desc-<D>]_dseg.tsv      index, label[, network_label]
    [tpl-<T>_]atlas-<A>[_space-<S>][_res-<N>][_desc-<D>]_dseg.nii.gz   the label image (NIfTI, not CIFTI)

Only resting-state runs are used (``task-rest``, any case, or no task entity); with several runs,
the first in sorted order.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SPACE = "MNI152NLin2009cAsym"
_TS = re.compile(r"_(?:seg|atlas)-([A-Za-z0-9]+)(?:_den-[A-Za-z0-9]+)?(?:_stat-mean)?_timeseries\.tsv$")
_ATLAS_ENTITY = re.compile(r"(?:^|_)atlas-([A-Za-z0-9]+)")
# fMRIPrep's MNI space first, then XCP-D's default (MNI152NLin6Asym), then any other
_SPACE_ORDER = ("MNI152NLin2009cAsym", "MNI152NLin6Asym")
_TASK = re.compile(r"_task-([A-Za-z0-9]+)")


@dataclass
class DerivativeDirs:
    """The fMRIPrep and XCP-D folders of one dataset (each holds ``sub-*`` folders)."""

    fmriprep: list[Path] = field(default_factory=list)
    xcpd: list[Path] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.fmriprep or self.xcpd)


def locate_derivatives(derivatives: Path | None, root: Path) -> DerivativeDirs:
    """fMRIPrep / XCP-D folders under ``derivatives`` (default ``<root>/derivatives``).

    Children named ``fmriprep*`` and ``xcp_d*``/``xcpd*`` are used; a folder that itself holds
    ``sub-*`` folders counts as both (a single mixed derivatives folder).
    """
    base = Path(derivatives) if derivatives is not None else Path(root) / "derivatives"
    if derivatives is not None and not base.is_dir():
        raise FileNotFoundError(f"{base}: derivatives folder not found")
    dirs = DerivativeDirs()
    if not base.is_dir():
        return dirs
    for child in sorted(p for p in base.iterdir() if p.is_dir()):
        name = child.name.lower()
        if name.startswith("fmriprep"):
            dirs.fmriprep.append(child)
        elif name.startswith(("xcp_d", "xcpd", "xcp-d")):
            dirs.xcpd.append(child)
    if any(base.glob("sub-*")):
        dirs.fmriprep.append(base)
        dirs.xcpd.append(base)
    return dirs


def _is_rest(name: str) -> bool:
    m = _TASK.search(name)
    return m is None or m.group(1).lower().startswith("rest")


def _folders(base: Path, sub: str, ses: str, kind: str) -> list[Path]:
    out = [base / sub / ses / kind] if ses else []
    out.append(base / sub / kind)
    return [p for p in out if p.is_dir()]


def _glob(folder: Path, pattern: str) -> list[Path]:
    """``folder.glob(pattern)`` for a pattern without a folder part, sorted: the folder listed once
    and its names matched with ``fnmatch`` (case-sensitive, as pathlib on POSIX). pathlib compiles a
    new regular expression for every pattern, and the patterns here hold a participant's ID, so
    Python's regex cache cannot keep them: scanning a 320-participant cohort took 0.56 s, and every
    chapter scans it again each time it asks for the prepared cohort."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / name for name in sorted(names) if fnmatch.fnmatchcase(name, pattern)]


def _first(paths) -> Path | None:
    paths = sorted(paths)
    return paths[0] if paths else None


def _matches_session(name: str, ses: str) -> bool:
    return not ses or f"_{ses}_" in name or "_ses-" not in name


@dataclass
class FmriprepFiles:
    t1_mni: Path | None = None
    brain_mask: Path | None = None
    bold: Path | None = None
    confounds: Path | None = None


def find_fmriprep(dirs: DerivativeDirs, sub: str, ses: str = "") -> FmriprepFiles:
    """The MNI T1w (+ brain mask), the MNI preprocessed rest BOLD and its confounds."""
    found = FmriprepFiles()
    for base in dirs.fmriprep:
        for anat in _folders(base, sub, ses, "anat"):
            t1 = _first(p for p in _glob(anat, f"{sub}*_space-{SPACE}*_desc-preproc_T1w.nii*")
                        if _matches_session(p.name, ses))
            if t1 is not None and found.t1_mni is None:
                found.t1_mni = t1
                mask = t1.with_name(t1.name.replace("_desc-preproc_T1w", "_desc-brain_mask"))
                found.brain_mask = mask if mask.is_file() else None
        for func in _folders(base, sub, ses, "func"):
            if found.bold is None:
                found.bold = _first(p for p in _glob(func, f"{sub}*_space-{SPACE}*_desc-preproc_bold.nii*")
                                    if _is_rest(p.name) and _matches_session(p.name, ses))
            if found.confounds is None:
                prefix = found.bold.name.split("_space-")[0] if found.bold else None
                candidates = [p for p in _glob(func, f"{sub}*_desc-confounds_*.tsv")
                              if p.name.endswith(("_timeseries.tsv", "_regressors.tsv"))
                              and _is_rest(p.name) and _matches_session(p.name, ses)]
                if prefix:
                    candidates = [p for p in candidates if p.name.startswith(prefix + "_desc-")] or candidates
                found.confounds = _first(candidates)
    return found


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def atlas_matches(entity: str, atlas: str) -> bool:
    """Does an XCP-D atlas entity name this atlas? (case and punctuation ignored;
    ``Schaefer100`` matches ``schaefer100-7``)."""
    e, a = _norm(entity), _norm(atlas)
    return e == a or (a.startswith(e) and a[len(e):] in {"7", "17"})


@dataclass
class XcpdFiles:
    timeseries: Path | None = None
    motion: Path | None = None
    atlases_found: list[str] = field(default_factory=list)


def find_xcpd(dirs: DerivativeDirs, sub: str, atlas: str, ses: str = "") -> XcpdFiles:
    """The rest time-series TSV for ``atlas`` (either naming) and the motion TSV."""
    found = XcpdFiles()
    for base in dirs.xcpd:
        for func in _folders(base, sub, ses, "func"):
            for p in sorted(_glob(func, f"{sub}*_timeseries.tsv")):
                m = _TS.search(p.name)
                if not m or not _is_rest(p.name) or not _matches_session(p.name, ses):
                    continue
                found.atlases_found.append(m.group(1))
                if found.timeseries is None and atlas_matches(m.group(1), atlas):
                    found.timeseries = p
            if found.motion is None:
                found.motion = _first(p for p in _glob(func, f"{sub}*_motion.tsv")
                                      if _is_rest(p.name) and _matches_session(p.name, ses))
    found.atlases_found = sorted(set(found.atlases_found))
    return found


def _usable(sub: str, ses: str) -> bool:
    """Only BIDS labels become paths (an ID such as ``sub-2/../sub-1`` would find another's files)."""
    from amage_core.data.sources.base import label_problem

    return label_problem(sub) is None and (not ses or label_problem(ses, "ses-") is None)


def raw_files(root: Path, sub: str, ses: str = "") -> tuple[Path | None, Path | None]:
    """(T1w, rest BOLD) of the raw BIDS dataset at ``root`` (first run; any acq entity)."""
    t1 = bold = None
    if not _usable(sub, ses):
        return None, None
    for anat in _folders(root, sub, ses, "anat"):
        t1 = t1 or _first(_glob(anat, f"{sub}*_T1w.nii*"))
    for func in _folders(root, sub, ses, "func"):
        bold = bold or _first(p for p in _glob(func, f"{sub}*_bold.nii*") if _is_rest(p.name))
    return t1, bold


def attach_derivatives(record, dirs: DerivativeDirs, atlas: str) -> None:
    """Fill a record's derivative paths (fMRIPrep and XCP-D) for its participant and session
    (none for an ID that is not a BIDS label: it is excluded, and never used in a path)."""
    if not _usable(record.participant_id, record.session):
        return
    fp = find_fmriprep(dirs, record.participant_id, record.session)
    xc = find_xcpd(dirs, record.participant_id, atlas, record.session)
    record.t1_mni, record.brain_mask = fp.t1_mni, fp.brain_mask
    record.bold = fp.bold
    record.confounds = fp.confounds or xc.motion
    record.timeseries = xc.timeseries
    record.xcpd_atlases = tuple(xc.atlases_found)


@dataclass
class XcpdAtlasFiles:
    """One atlas shipped in XCP-D derivatives: its label table and (when present) label image."""

    name: str                     # the atlas entity as XCP-D spells it (e.g. 4S156Parcels)
    table: Path                   # ..._dseg.tsv
    image: Path | None = None     # ..._dseg.nii[.gz] (volumetric); None for a CIFTI-only atlas


def _atlas_folders(dirs: DerivativeDirs) -> list[Path]:
    out = []
    for base in dirs.xcpd:
        for folder in (base / "atlases", base / "sourcedata" / "atlases"):
            if folder.is_dir() and folder not in out:
                out.append(folder)
    return out


def _image_rank(path: Path) -> tuple[int, str]:
    space = re.search(r"_space-([A-Za-z0-9]+)", path.name) or re.search(r"^tpl-([A-Za-z0-9]+)", path.name)
    label = space.group(1) if space else ""
    return (_SPACE_ORDER.index(label) if label in _SPACE_ORDER else len(_SPACE_ORDER), path.name)


def xcpd_atlases(dirs: DerivativeDirs) -> dict[str, XcpdAtlasFiles]:
    """Every atlas whose label table XCP-D wrote into the derivatives, keyed by normalised name."""
    found: dict[str, XcpdAtlasFiles] = {}
    for folder in _atlas_folders(dirs):
        for table in sorted(folder.rglob("*_dseg.tsv")):
            m = _ATLAS_ENTITY.search(table.name)
            if not m or _norm(m.group(1)) in found:
                continue
            name = m.group(1)
            images = [p for p in table.parent.glob(f"*atlas-{name}_*dseg.nii*")
                      if p.name.endswith((".nii", ".nii.gz")) and not p.name.endswith(".dlabel.nii")]
            found[_norm(name)] = XcpdAtlasFiles(name, table, min(images, key=_image_rank) if images else None)
    return found


def find_xcpd_atlas(dirs: DerivativeDirs, name: str) -> XcpdAtlasFiles | None:
    """The XCP-D atlas files for ``name`` (case and punctuation ignored), or None."""
    return xcpd_atlases(dirs).get(_norm(name))
