"""Security and privacy: no participant data in git, checkpoints loaded weights-only, no pickle in
prepared data or runs, no network access while preparing and training."""
from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from amage_core.train.checkpoint import load_checkpoint, save_checkpoint
from rel_helpers import REPO

DATA_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh", ".npy", ".npz", ".pt", ".pth", ".ckpt", ".pkl",
                 ".pickle", ".joblib", ".h5", ".hdf5", ".mat", ".1D", ".gz", ".zip", ".tar")
ALLOWED_UNDER = ("tests/fixtures/",)         # small hand-made fixtures, if one is ever committed


def _magic(head: bytes) -> str | None:
    """What kind of data file the first bytes announce (None: nothing of concern)."""
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in (348, 540) or head[:4] in (
            (348).to_bytes(4, "big"), (540).to_bytes(4, "big")):
        return "NIfTI"
    for magic, kind in ((b"\x93NUMPY", "numpy"), (b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip/torch"),
                        (b"\x89HDF", "HDF5")):
        if head.startswith(magic):
            return kind
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return None


def test_no_tracked_file_holds_images_arrays_or_weights():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    problems = []
    for name in filter(None, files.decode().split("\0")):
        if name.startswith(ALLOWED_UNDER) or not (REPO / name).is_file():
            continue
        if name.lower().endswith(tuple(s.lower() for s in DATA_SUFFIXES)):
            problems.append(f"{name} (name)")
            continue
        with open(REPO / name, "rb") as fh:
            kind = _magic(fh.read(8))
        if kind:
            problems.append(f"{name} ({kind} content)")
    assert not problems, f"participant-level data or weights tracked by git: {problems}"


def test_the_scan_recognises_what_it_looks_for(tmp_path):
    """(the check above could not fail if the magic numbers were wrong)"""
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), tmp_path / "a.nii")
    np.save(tmp_path / "a.npy", np.zeros(3))
    save_checkpoint(tmp_path / "a.pt", {"w": torch.zeros(2)})
    import pickle

    (tmp_path / "a.bin").write_bytes(pickle.dumps({"a": 1}))
    kinds = {p.name: _magic(p.read_bytes()[:8]) for p in tmp_path.iterdir()}
    assert kinds == {"a.nii": "NIfTI", "a.npy": "numpy", "a.pt": "zip/torch", "a.bin": "pickle"}


@pytest.mark.parametrize("path", ["data/camcan/t1.npy", "data/runs/x/fold-0/checkpoint.pt", "runs/a/predictions.tsv",
                                  "book/chapters/02_data.ipynb", "book/_build/html/index.html",
                                  "somewhere/sub-01_T1w.nii.gz", "x/sub-01_T1w.nii", "x/weights.pth"])
def test_data_and_outputs_are_git_ignored(path):
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
    assert proc.returncode == 0, f"{path} is not ignored"


class _Touch:
    """An object whose unpickling creates a file: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "fold-0" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save({"epoch": 1, "model": {"w": torch.zeros(2)}, "extra": _Touch(marker)}, path)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: refused, not a weights-only checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_resumed_fit_refuses_such_a_checkpoint(tmp_path):
    from torch_geometric.data import Data

    from amage_core.config import TrainConfig
    from amage_core.models.spec import ModelOutput
    from amage_core.train.loop import fit

    class Linear(torch.nn.Module):
        modalities = frozenset({"table"})

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, batch):
            return ModelOutput(pred=self.lin(batch.tab).squeeze(-1), embedding=None, gate=None)

    items = [Data(tab=torch.randn(1, 2), y=torch.tensor([0.1 * i]), idx=torch.tensor([i])) for i in range(6)]
    marker = tmp_path / "code-ran"
    torch.save({"format": 1, "extra": _Touch(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="refused"):
        fit(Linear(), items, items, TrainConfig(epochs=1, device="cpu", batch_size=3), tmp_path, resume=True,
            progress=False)
    assert not marker.exists()


def test_every_torch_load_in_the_library_is_weights_only():
    calls = []
    for path in (REPO / "amage_core").rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            calls.append((path.name, call))
    assert calls, "no torch.load found at all: the pattern is wrong"
    assert all("weights_only=True" in call for _, call in calls), calls
    for path in (REPO / "amage_core").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"allow_pickle\s*=\s*True|pickle\.dump|joblib\.dump", text), path


def _no_pickle_anywhere(folder: Path) -> int:
    """Every file under ``folder``: arrays load without pickle, checkpoints weights-only, nothing is
    a pickle. Returns how many arrays were checked."""
    n_arrays = 0
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        assert path.suffix not in (".pkl", ".pickle", ".joblib"), path
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            assert arr.dtype != object, path
            n_arrays += 1
        elif path.suffix == ".pt":
            load_checkpoint(path)
        else:
            assert _magic(path.read_bytes()[:8]) is None, f"{path} is a binary file"
    return n_arrays


def test_prepared_data_and_runs_hold_no_pickle(prepared_ref, train_ref):
    assert _no_pickle_anywhere(prepared_ref) == 2                # connectivity and t1
    _no_pickle_anywhere(train_ref[0])


def test_preparing_and_training_need_no_network(tmp_path, monkeypatch, profile_path):
    """A tiny synthetic cohort generated, prepared and cross-validated with every socket blocked."""
    from amage_core.baselines import run_baseline
    from amage_core.config import SynthConfig, load_profile, replace
    from amage_core.data.prepare import prepare_cohort
    from amage_core.synth import generate_cohort
    from amage_core.train.cv import cross_validate

    attempts = []

    def blocked(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in a test that forbids it")

    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                        (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, blocked)
    with pytest.raises(OSError, match="network access"):              # the block is in place
        socket.create_connection(("example.org", 80))
    attempts.clear()

    prof = load_profile(profile_path)
    root = generate_cohort(SynthConfig(n_subjects=12, seed=5, voxel_size=8.0, n_bold_nifti=1, n_volumes=40),
                           tmp_path / "source", progress=False)
    cohort = prepare_cohort("bids", root, tmp_path / "prepared", prof.prep, progress=False)
    assert cohort.n >= 10
    train = replace(prof.train, epochs=1, val_fraction=0.4, bias_fit="training")
    run = cross_validate(cohort, prof.model, train, prof.graph, tmp_path / "run", variant="fmri", progress=False)
    assert run.complete and np.isfinite(run.predictions["predicted_age"]).all()
    assert run_baseline("ridge-fc", cohort, train, tmp_path / "ridge", progress=False).complete
    assert attempts == []
