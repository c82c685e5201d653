"""`amage synth` end to end, and what it does with an existing --out folder."""
from __future__ import annotations

import numpy as np
import pandas as pd

from amage_core.cli import main
from amage_core.synth import load_truth

ARGS = ["synth", "--preset", "oasis3-like", "--n-subjects", "5", "--voxel-size", "8", "--n-volumes", "40",
        "--quiet"]


def test_cli_writes_resumes_and_refuses(tmp_path, capsys):
    out = tmp_path / "oasis"
    assert main(ARGS + ["--out", str(out), "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "reachable floor" in printed and "oracle (unreachable)" in printed
    ages = pd.read_csv(out / "participants.tsv", sep="\t")["age"]
    assert len(ages) == 5 and ages.min() >= 42 and ages.max() <= 95
    truth = load_truth(out)
    assert truth.config["tr"] == 2.2 and truth.config["n_volumes"] == 40
    assert truth.config["config"]["n_bold_nifti"] == 5           # capped at --n-subjects
    conf = pd.read_csv(next(out.glob("derivatives/fmriprep/sub-0001/func/*confounds*.tsv")), sep="\t")
    assert len(conf) == 40

    stamp = (out / "participants.tsv").stat().st_mtime_ns
    assert main(ARGS + ["--out", str(out), "--seed", "2"]) == 0    # same config: kept as it is
    assert (out / "participants.tsv").stat().st_mtime_ns == stamp

    assert main(ARGS + ["--out", str(out), "--seed", "3"]) == 2    # other config: refused
    assert "--overwrite" in capsys.readouterr().err
    assert main(ARGS + ["--out", str(out), "--seed", "3", "--overwrite"]) == 0
    assert not np.array_equal(pd.read_csv(out / "participants.tsv", sep="\t")["age"], ages)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(ARGS + ["--out", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "mine"


def test_truth_tables(tiny_cohort, tiny_cfg):
    truth = load_truth(tiny_cohort)
    assert len(truth.participants) == tiny_cfg.n_subjects
    assert {"participant_id", "age", "sex", "brain_age", "smri_deviation", "fmri_deviation"} <= set(truth.participants)
    assert len(truth.regions) == 160 and truth.regions["smri_hotspot"].any()
    dmn = truth.regions[truth.regions["network"] == "default"]
    assert (dmn["fmri_within_fc_change_per_decade"] < 0).all()
    assert all(path.is_file() for path in truth.maps.values())
    assert set(truth.networks["network"]) == set(truth.regions["network"])
