"""Shared helpers of the reliability tests: a tiny synthetic source, a tiny profile, `amage` runs."""
from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from amage_core.config import SynthConfig

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FAULT_RUNNER = HERE / "fault_runner.py"

# 20 participants, 8 mm T1, 40 volumes: a source that prepares in a few seconds
SYNTH = SynthConfig(n_subjects=20, seed=3, voxel_size=8.0, n_bold_nifti=0, n_volumes=40)
PREP_SETTINGS = {"atlas": "dosenbach160", "t1_shape": [12, 14, 12], "min_volumes": 30, "n_jobs": 1}
STEP = "torch.nn.functional:mse_loss"          # called once per training batch (train/loop.py)
COHORT_TABLES = ("participants.tsv", "qc.tsv", "regions.tsv", "qc_summary.tsv", "qc_summary.json")


def tiny_profile(path: Path, workdir: Path, epochs: int = 2, **sections) -> Path:
    """A profile with the smallest model that still has every part (GAT, DenseNet, fusion)."""
    spec = {
        "name": "reliability", "workdir": str(workdir),
        "prep": dict(PREP_SETTINGS),
        "graph": {"sparsify": "topk", "topk": 4},
        "model": {"gat": {"hidden": 4, "heads": 1, "out_dim": 8, "roi_layers": 1},
                  "densenet": {"init_features": 4, "growth_rate": 2, "block_config": [1], "out_dim": 8},
                  "sfcn": {"channels": [4, 8], "out_dim": 8},
                  "fusion": {"dim": 8, "heads": 1}, "head_hidden": 8},
        "train": {"epochs": epochs, "batch_size": 4, "folds": 2, "seed": 0, "device": "cpu",
                  "val_fraction": 0.3},
    }
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def train_args(data: Path, out: Path, profile: Path, model: str = "amagenet") -> list[str]:
    return ["train", "--data", str(data), "--model", model, "--profile", str(profile), "--out", str(out),
            "--quiet"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "PYTHONHASHSEED": "0"}


def amage(args: list[str], faults: list[str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``amage ARGS`` in a subprocess (through the fault runner when ``faults`` are given)."""
    cmd = [sys.executable, str(FAULT_RUNNER), *(faults or []), "--", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env(), **kw)


def popen_amage(args: list[str], faults: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(FAULT_RUNNER), *(faults or []), "--", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env())


def temporaries(folder: Path) -> list[Path]:
    """Temporary files left by interrupted atomic writes anywhere under ``folder``."""
    return sorted(p for p in Path(folder).rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp"))


def assert_same_cohort(a: Path, b: Path) -> None:
    """Two prepared cohorts are identical: arrays bitwise, tables byte for byte, manifests
    equal apart from their creation time."""
    from amage_core.io import read_json

    for name in ("connectivity.npy", "t1.npy", "tables.npy"):
        assert (a / name).is_file() == (b / name).is_file(), name
        if (a / name).is_file():
            x, y = np.load(a / name, allow_pickle=False), np.load(b / name, allow_pickle=False)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), f"{name} differs"
    for name in COHORT_TABLES:
        assert filecmp.cmp(a / name, b / name, shallow=False), f"{name} differs"
    ma, mb = read_json(a / "manifest.json"), read_json(b / "manifest.json")
    ma.pop("created"), mb.pop("created")
    assert ma == mb
