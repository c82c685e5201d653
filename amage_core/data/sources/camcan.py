"""Cam-CAN cc700 (release004): raw BIDS sections + the user's fMRIPrep/XCP-D derivatives.

``root`` is ``cc700/mri/pipeline/release004`` (or a BIDS section folder beside which
``anat/`` lives). Two namings of the raw sections are read:

    BIDS_20190411/anat/sub-CCxxxxxx/anat/sub-CCxxxxxx_T1w.nii.gz
    BIDS_20190411/epi_rest/sub-CCxxxxxx/epi_rest/sub-CCxxxxxx_epi_rest.nii.gz
    BIDSsep/anat/sub-CCxxxxxx/anat/sub-CCxxxxxx_T1w.nii.gz
    BIDSsep/func_rest/sub-CCxxxxxx/func/sub-CCxxxxxx_task-Rest_bold.nii.gz

Demographics, the first found of (``demographics=PATH`` overrides), searched in ``root`` and up
to four folders above it: ``standard_data.csv`` (CCID, Age, Sex), ``cc700-scored/participant_data.csv``
(Observations, age, gender_code 1 = male 2 = female, gender_text), then the anat section's
``participants.tsv`` (participant_id, age, sex or gender).

Raw resting BOLD is never used: it needs motion correction and registration first. Without
derivatives the source refuses to start and says how to make them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from amage_core.config import PrepConfig
from amage_core.data.sources.base import (ParticipantRecord, SourceScan, label_problem, mark_duplicates,
                                          normalise_sex, read_table, require_columns, to_age,
                                          with_prefix)
from amage_core.data.sources.derivatives import attach_derivatives, locate_derivatives

SECTIONS = ("BIDS_20190411", "BIDSsep")
HOW_TO_DERIVE = (
    "Cam-CAN resting fMRI is distributed raw (no motion correction, no registration). Preprocess it "
    "first: run fMRIPrep on the resting-state BIDS section (release004/BIDS_20190411/epi_rest or "
    "release004/BIDSsep/func_rest), e.g. `fmriprep <section> <out>/fmriprep participant "
    "--output-spaces MNI152NLin2009cAsym`, optionally XCP-D on its output, then pass "
    "--derivatives <out> (or restrict to T1 with modalities: [smri])."
)


def _sections(root: Path) -> tuple[Path | None, Path | None]:
    """(anat section, rest section) folders."""
    for name in SECTIONS:
        base = root / name
        if (base / "anat").is_dir():
            rest = next((base / s for s in ("epi_rest", "func_rest") if (base / s).is_dir()), None)
            return base / "anat", rest
    if (root / "anat").is_dir():
        rest = next((root / s for s in ("epi_rest", "func_rest") if (root / s).is_dir()), None)
        return root / "anat", rest
    if root.name == "anat" and any(root.glob("sub-CC*")):
        return root, None
    return None, None


def _find_demographics(root: Path, anat: Path | None) -> Path | None:
    for folder in [root, *list(root.parents)[:4]]:
        for rel in ("standard_data.csv", "cc700-scored/participant_data.csv", "participant_data.csv"):
            if (folder / rel).is_file():
                return folder / rel
    if anat is not None and (anat / "participants.tsv").is_file():
        return anat / "participants.tsv"
    return None


def read_demographics(path: Path) -> pd.DataFrame:
    """participant_id, age, sex (M/F/None) from any of the three Cam-CAN demographics files."""
    df = read_table(path)
    cols = set(df.columns)
    if "CCID" in cols:                                    # standard_data.csv
        require_columns(df, ["CCID", "Age", "Sex"], path)
        ids, ages, sexes = df["CCID"], df["Age"], df["Sex"]
    elif "Observations" in cols:                          # cc700-scored/participant_data.csv
        require_columns(df, ["Observations", "age"], path)
        ids, ages = df["Observations"], df["age"]
        if "gender_code" in cols:
            sexes = [normalise_sex(c) or normalise_sex(t) for c, t in
                     zip(df["gender_code"], df.get("gender_text", [None] * len(df)))]
        else:
            require_columns(df, ["gender_text"], path)
            sexes = df["gender_text"]
    else:                                                 # BIDS participants.tsv
        require_columns(df, ["participant_id", "age"], path)
        sex_col = "sex" if "sex" in cols else "gender" if "gender" in cols else None
        if sex_col is None:
            raise ValueError(f"{path}: no sex or gender column")
        ids, ages, sexes = df["participant_id"], df["age"], df[sex_col]
    return pd.DataFrame({
        "participant_id": [with_prefix(str(i).strip()) for i in ids],
        "age": [to_age(a) for a in ages],
        "sex": [normalise_sex(s) for s in sexes],
    })


def scan(root: Path, derivatives: Path | None, cfg: PrepConfig,
         demographics: str | Path | None = None) -> SourceScan:
    root = Path(root)
    anat, rest = _sections(root)
    if anat is None:
        raise FileNotFoundError(
            f"{root}: no Cam-CAN anat section (expected {SECTIONS[0]}/anat or {SECTIONS[1]}/anat "
            "under cc700/mri/pipeline/release004)")
    demo_path = Path(demographics) if demographics else _find_demographics(root, anat)
    if demo_path is None or not demo_path.is_file():
        raise FileNotFoundError(
            f"{root}: no Cam-CAN demographics (standard_data.csv, cc700-scored/participant_data.csv "
            "or participants.tsv); pass demographics=PATH")
    demo = read_demographics(demo_path)
    wants_fmri = not cfg.modalities or "fmri" in cfg.modalities
    dirs = locate_derivatives(derivatives, root)
    if wants_fmri and dirs.empty:
        raise ValueError(f"{root}: no fMRIPrep/XCP-D derivatives found. {HOW_TO_DERIVE}")
    records = []
    for _, row in demo.iterrows():
        sub = row["participant_id"]
        sex = row["sex"] if isinstance(row["sex"], str) else None    # (pandas turns None into NaN)
        r = ParticipantRecord(sub, row["age"], sex, "camcan", demographics=demo_path)
        attach_derivatives(r, dirs, cfg.atlas)
        if label_problem(sub) is not None:
            records.append(r)                # excluded by the preparation; never used in a path
            continue
        t1 = sorted((anat / sub / "anat").glob(f"{sub}*_T1w.nii*"))
        r.t1_raw = t1[0] if t1 else None
        if rest is not None:
            raw = sorted((rest / sub).glob("*/*.nii*"))
            r.raw_bold = raw[0] if raw else None
        records.append(r)
    mark_duplicates(records, demo_path)
    notes = [f"demographics: {demo_path}"]
    return SourceScan("camcan", records, frozenset({"fmri", "smri"}), notes=notes)
