"""Writes that fail half-way (full disk, permission) and damaged files: a clear error naming the
file, the previous file intact, no temporary left; damage is detected on load."""
from __future__ import annotations

import errno
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from amage_core import io
from amage_core.cli import main
from amage_core.data.cohort import load_cohort
from amage_core.train.checkpoint import load_checkpoint, save_checkpoint
from rel_helpers import assert_same_cohort, temporaries


def _half_then(error: OSError, torch_order: bool = False):
    """A replacement for ``np.save(fh, array)`` / ``torch.save(obj, fh)`` that writes half of the
    bytes, then fails with ``error``."""
    def save(*args, **kwargs):
        import io as _io

        obj, fh = args[:2] if torch_order else args[1::-1]
        buf = _io.BytesIO()
        if torch_order:
            _ORIGINAL_TORCH_SAVE(obj, buf)
        else:
            _ORIGINAL_NP_SAVE(buf, obj, allow_pickle=False)
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise error
    return save


_ORIGINAL_TORCH_SAVE, _ORIGINAL_NP_SAVE = torch.save, np.save
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("kind", ["text", "json", "tsv", "npy"])
def test_a_full_disk_keeps_the_previous_file_and_names_the_target(tmp_path, monkeypatch, kind):
    import pandas as pd

    target = tmp_path / f"file.{kind}"
    writers = {"text": lambda: io.write_text(target, "new " * 1000),
               "json": lambda: io.write_json(target, {"new": list(range(1000))}),
               "tsv": lambda: io.write_tsv(target, pd.DataFrame({"a": range(1000)})),
               "npy": lambda: io.write_npy(target, np.arange(1000.0))}
    target.write_bytes(b"previous")
    if kind == "npy":
        monkeypatch.setattr(np, "save", _half_then(ENOSPC))
    else:   # the data reached the temporary file, then the flush to disk fails
        monkeypatch.setattr(io.os, "fsync", lambda fd: (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(OSError) as exc:
        writers[kind]()
    assert exc.value.errno == errno.ENOSPC and str(target) in str(exc.value)
    assert target.read_bytes() == b"previous"
    assert temporaries(tmp_path) == []


def test_an_unwritable_folder_is_a_permission_error_naming_the_target(tmp_path, monkeypatch):
    # (the tests may run as root, which ignores chmod: the refusal is simulated where it happens)
    target = tmp_path / "manifest.json"
    target.write_text("{}")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as exc:
        io.write_json(target, {"a": 1})
    assert str(target) in str(exc.value)
    assert target.read_text() == "{}" and temporaries(tmp_path) == []


def test_a_checkpoint_write_that_fails_half_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "model": {"w": torch.ones(64, 64)}})
    monkeypatch.setattr(torch, "save", _half_then(ENOSPC, torch_order=True))
    with pytest.raises(OSError, match="checkpoint.pt"):
        save_checkpoint(path, {"epoch": 2, "model": {"w": torch.zeros(64, 64)}})
    assert load_checkpoint(path)["epoch"] == 1 and temporaries(tmp_path) == []


def test_prep_on_a_full_disk_stops_with_one_line_naming_the_file_then_resumes(
        tmp_path, monkeypatch, capsys, synth_root, prepared_ref, profile_path):
    out = tmp_path / "cohort"
    args = ["prep", "--dataset", "bids", "--root", str(synth_root), "--out", str(out),
            "--profile", str(profile_path), "--quiet"]
    real_fsync, calls = io.os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 12:            # a few participants in: the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("amage prep: error:"), err
    assert "No space left on device" in err[0] and str(out) in err[0]
    assert temporaries(out) == [] and not (out / "manifest.json").exists()
    monkeypatch.setattr(io.os, "fsync", real_fsync)      # space freed: the same command resumes
    assert main(args) == 0
    assert_same_cohort(out, prepared_ref)


# --------------------------------------------------------------------------------------------
# damaged files are detected
# --------------------------------------------------------------------------------------------
@pytest.fixture
def cohort_copy(tmp_path, prepared_ref) -> Path:
    return Path(shutil.copytree(prepared_ref, tmp_path / "cohort"))


def _flip(path: Path, offset_from_end: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("array", ["connectivity", "t1"])
def test_a_flipped_bit_in_a_prepared_array_is_caught_by_its_checksum(cohort_copy, array):
    load_cohort(cohort_copy, verify=True)                  # intact: verifies
    _flip(cohort_copy / f"{array}.npy")
    with pytest.raises(ValueError, match=rf"{array}\.npy: checksum mismatch"):
        load_cohort(cohort_copy, verify=True)


@pytest.mark.parametrize("damage", ["truncated", "missing", "header", "participants", "manifest"])
def test_a_damaged_prepared_cohort_is_a_clear_error_on_load(cohort_copy, damage):
    t1 = cohort_copy / "t1.npy"
    if damage == "truncated":
        t1.write_bytes(t1.read_bytes()[: t1.stat().st_size // 2])
        expected = r"t1\.npy: cannot open the array"
    elif damage == "missing":
        t1.unlink()
        expected = r"t1\.npy: cannot open the array"
    elif damage == "header":
        t1.write_bytes(b"garbage!" + t1.read_bytes()[8:])
        expected = r"t1\.npy: cannot open the array"
    elif damage == "participants":
        lines = (cohort_copy / "participants.tsv").read_text().splitlines(keepends=True)
        (cohort_copy / "participants.tsv").write_text("".join(lines[:-1]))
        expected = r"participants\.tsv: 19 rows, manifest says 20"
    else:
        (cohort_copy / "manifest.json").write_text('{"format_version": ')
        expected = r"manifest\.json: not valid JSON"
    with pytest.raises(ValueError, match=expected):
        load_cohort(cohort_copy)


def _tensor_record_offset(path: Path) -> int:
    """Byte offset of the data of a tensor record inside a torch zip checkpoint."""
    import struct

    info = next(i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename and i.file_size >= 64)
    data = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


@pytest.mark.parametrize("damage", ["flipped weight", "truncated", "empty", "not a checkpoint"])
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    path = tmp_path / "fold-0" / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 3, "model": {"w": torch.arange(256, dtype=torch.float32)}})
    data = bytearray(path.read_bytes())
    if damage == "flipped weight":            # torch.load alone would return the altered weight
        data[_tensor_record_offset(path) + 8] ^= 0x40
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"epoch 3\n")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"fold-0/checkpoint\.pt: .*damaged"):
        load_checkpoint(path)
