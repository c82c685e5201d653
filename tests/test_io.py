import numpy as np
import pandas as pd
import pytest

from amage_core import io


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "table.tsv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with io.atomic_write(target) as fh:
            fh.write("half a new fi")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.tsv"]  # no temporary left behind


def test_tsv_json_npy_round_trip(tmp_path):
    df = pd.DataFrame({"participant_id": ["sub-1", "sub-2"], "age": [20.5, 71.0]})
    io.write_tsv(tmp_path / "p.tsv", df)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p.tsv", sep="\t"), df)
    io.write_json(tmp_path / "m.json", {"b": np.float32(1.5), "a": [1, 2]})
    assert io.read_json(tmp_path / "m.json") == {"a": [1, 2], "b": 1.5}
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    io.write_npy(tmp_path / "a.npy", arr)
    loaded = io.load_npy(tmp_path / "a.npy")
    assert isinstance(loaded, np.memmap) and np.array_equal(loaded, arr)


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        io.write_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))


def test_invalid_json_names_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        io.read_json(p)


def test_checksums_and_hashes_are_stable(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert io.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert io.stable_hash({"a": 1, "b": 2}) == io.stable_hash({"b": 2, "a": 1})
    assert io.stable_hash({"a": 1}) != io.stable_hash({"a": 2})


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    io.write_text(tmp_path / "a.txt", "x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
