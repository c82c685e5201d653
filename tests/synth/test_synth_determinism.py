"""Same seed -> byte-identical files (whatever n_jobs); another seed -> other data."""
from __future__ import annotations

from pathlib import Path

from amage_core.io import sha256_file
from amage_core.synth import generate_cohort

from conftest import tiny_config


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_across_n_jobs(tiny_cohort, tiny_cfg, tmp_path):
    again = generate_cohort(tiny_cfg, tmp_path / "again", n_jobs=2, progress=False)
    first, second = _digests(tiny_cohort), _digests(again)
    assert first.keys() == second.keys()
    different = [name for name in first if first[name] != second[name]]
    assert not different, different[:5]


def test_other_seed_gives_other_data(tiny_cohort, tmp_path):
    other = generate_cohort(tiny_config(seed=4), tmp_path / "other", progress=False)
    first, second = _digests(tiny_cohort), _digests(other)
    for name in ("participants.tsv",
                 "derivatives/fmriprep/sub-0001/anat/sub-0001_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",
                 "derivatives/xcp_d/sub-0001/func/"
                 "sub-0001_task-rest_space-MNI152NLin2009cAsym_seg-Dosenbach160_stat-mean_timeseries.tsv"):
        assert first[name] != second[name], name
