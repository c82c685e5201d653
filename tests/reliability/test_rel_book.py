"""A chapter fails: `amage book` names the chapter and the cell, keeps the chapters already
executed, and the next run resumes from the failed chapter (three tiny notebooks, no data)."""
from __future__ import annotations

import functools
from pathlib import Path

import nbformat
import pytest
import yaml

from amage_core import book
from amage_core.cli import main


def _notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "demo"\nflag = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params,
                *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def chapters(tmp_path) -> tuple[Path, Path, Path]:
    """(chapters dir, book dir, profile): chapter 02 raises while the flag file exists."""
    folder = tmp_path / "chapters"
    folder.mkdir()
    flag = tmp_path / "FAIL"
    _notebook(folder / "01_first.ipynb", "x = 1 + 1", "print('first', x)")
    _notebook(folder / "02_second.ipynb", "from pathlib import Path\ny = 2",
              "if Path(flag).exists():\n    raise RuntimeError('boom in the second chapter')", "print('second')")
    _notebook(folder / "03_third.ipynb", "print('third')")
    profile = tmp_path / "profile.yml"
    profile.write_text(yaml.safe_dump({"name": "chapters", "workdir": str(tmp_path / "work"),
                                       "book": {"parameters": {"flag": str(flag)}, "timeout_per_cell": 60}}))
    flag.write_text("fail")
    return folder, tmp_path / "book", profile


def test_a_failing_chapter_is_named_with_its_cell_and_the_rerun_resumes_there(chapters, capsys):
    folder, book_dir, profile = chapters
    run = functools.partial(book.run_chapters, str(profile), chapters_dir=folder, book_dir=book_dir,
                            log=lambda *a: None)
    with pytest.raises(book.ChapterError) as exc:
        run()
    message = str(exc.value)
    assert "chapter 02_second failed in cell" in message
    assert "(`if Path(flag).exists():`" in message                          # which cell, by its code
    assert "RuntimeError: boom in the second chapter" in message
    out = book_dir / "chapters"
    assert (out / "01_first.ipynb").is_file()                                 # earlier chapter kept
    failed = nbformat.read(out / "02_second.ipynb", as_version=4)             # the traceback is kept
    assert any(o.get("ename") == "RuntimeError" for c in failed.cells for o in c.get("outputs", []))
    assert not (out / "03_third.ipynb").exists()

    (folder.parent / "FAIL").unlink()                                         # the cause is fixed
    results = run()
    assert [(r.name, r.reused) for r in results] == [("01_first", True), ("02_second", False),
                                                      ("03_third", False)]
    assert all((out / f"{n}.ipynb").is_file() for n in ("01_first", "02_second", "03_third"))


def test_amage_book_reports_a_failing_chapter_in_one_line(chapters, capsys, monkeypatch):
    folder, book_dir, profile = chapters
    monkeypatch.setattr(book, "run_chapters", functools.partial(book.run_chapters, chapters_dir=folder,
                                                                log=lambda *a: None))
    code = main(["book", "--profile", str(profile), "--book-dir", str(book_dir), "--no-html",
                 "--chapters", "01", "02"])
    err = capsys.readouterr().err.strip().splitlines()       # (papermill's progress bars come first)
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("amage book: error: chapter 02_second failed in cell")


@pytest.mark.parametrize("how", ["kernel dies", "cell timeout"])
def test_a_chapter_whose_kernel_dies_or_hangs_is_named(tmp_path, how):
    folder = tmp_path / "chapters"
    folder.mkdir()
    cell = "import os\nos._exit(1)" if how == "kernel dies" else "import time\ntime.sleep(120)"
    _notebook(folder / "01_ok.ipynb", "print('ok')")
    _notebook(folder / "02_broken.ipynb", cell)
    profile = tmp_path / "profile.yml"
    profile.write_text(yaml.safe_dump({"name": "p", "workdir": str(tmp_path / "work"),
                                       "book": {"parameters": {"flag": ""}, "timeout_per_cell": 3}}))
    expected = "DeadKernelError" if how == "kernel dies" else "CellTimeoutError: A cell timed out"
    with pytest.raises(book.ChapterError, match=rf"chapter 02_broken failed \({expected}"):
        book.run_chapters(str(profile), chapters_dir=folder, book_dir=tmp_path / "book", log=lambda *a: None)
    assert (tmp_path / "book" / "chapters" / "01_ok.ipynb").is_file()
