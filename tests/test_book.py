"""The foundation: the package imports, the CLI answers, chapters are clean, the book builds."""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import amage_core
from amage_core import book
from amage_core.cli import SUBCOMMANDS
from amage_core.config import ConfigError

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(amage_core.__path__, "amage_core.")
             if not m.name.endswith("__main__")]
    assert "amage_core.book" in names and "amage_core.config" in names
    for name in names:
        importlib.import_module(name)


@pytest.mark.parametrize("command", [[]] + [[name] for name in SUBCOMMANDS])
def test_cli_help(command):
    proc = subprocess.run([sys.executable, "-m", "amage_core", *command, "--help"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "usage: amage" in proc.stdout


def test_cli_misuse_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "amage_core", "book", "--profile"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "expected one argument" in proc.stderr


def test_there_are_chapters():
    assert CHAPTERS, "chapters/ has no notebook"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs committed"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    assert "profile" in "".join(tagged[0]["source"])
    # a chapter is a short story: long cells belong in the library
    for c in code:
        assert len("".join(c["source"]).splitlines()) <= 15, f"a cell of {path.name} is longer than 15 lines"


def test_chapter_selection_by_prefix():
    first = CHAPTERS[0].stem
    assert [p.stem for p in book.find_chapters([first[:2]])] == [first]
    with pytest.raises(ConfigError, match="no chapter matches"):
        book.find_chapters(["99"])


def test_unknown_chapter_parameter_is_an_error(tmp_path):
    profile = tmp_path / "p.yml"
    profile.write_text(yaml.safe_dump({
        "name": "p", "book": {"chapter_parameters": {CHAPTERS[0].stem: {"not_a_parameter": 1}}},
    }))
    with pytest.raises(ConfigError, match="not_a_parameter"):
        book.run_chapters(str(profile), [CHAPTERS[0].stem], book_dir=tmp_path / "book")


@pytest.mark.slow
def test_book_builds_on_the_tiny_profile(tiny_book):
    """`amage book` executes every chapter and renders HTML without warnings, then reuses results."""
    html = tiny_book.book_dir / "_build" / "html"
    assert (html / "index.html").is_file()
    for chapter in CHAPTERS:
        page = html / "chapters" / f"{chapter.stem}.html"
        assert page.is_file(), f"{chapter.stem} was not rendered"
        text = page.read_text()
        assert "Traceback (most recent call last)" not in text, f"{chapter.stem} shows an error"
        assert "output traceback" not in text and "output stderr" not in text, f"{chapter.stem} shows stderr"
        assert str(tiny_book.profile.parent) not in text, f"{chapter.stem} shows a local path (parameters cell)"
        assert not local_paths(text), f"{chapter.stem} shows a local path: {local_paths(text)[:3]}"
    # a second run with nothing changed reuses every chapter
    proc = subprocess.run(tiny_book.command + ["--no-html"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("unchanged, reusing") == len(CHAPTERS)


# ------------------------------------------------------------------------------------------------
# What a reader sees: no local path, no NaN cell, no bias-corrected accuracy (issue 16)
# ------------------------------------------------------------------------------------------------
_ROOTS = ("home", "tmp", "work", "Users", "root", "var", "mnt", "data", "opt", "srv", "private")
_LOCAL = re.compile(r"(?<![\w.:/])/(?:%s)/[^\s\"'<>]*" % "|".join(_ROOTS))


def local_paths(text: str) -> list[str]:
    """Absolute paths of this or any machine in ``text`` (the repository's own, the temporary book's,
    a home folder, ...); URLs (``https://host/home/...``) do not count."""
    found = _LOCAL.findall(text)
    for root in (str(REPO), str(Path.home())):
        if root in text:
            found.append(root)
    return found


def nan_cells(nb: dict) -> list[str]:
    """Table cells that read NaN (or nan, <NA>) in the outputs of an executed notebook."""
    bad = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            html = "".join(data.get("text/html", ""))
            bad += re.findall(r"<td>\s*(?:NaN|nan|<NA>|&lt;NA&gt;|None)\s*</td>", html)
            if not html and "text/plain" in data:       # a plain-text table (a Series or a DataFrame)
                bad += re.findall(r"(?<![\w'\"])(?:NaN|<NA>)(?![\w'\"])", "".join(data["text/plain"]))
    return bad


def test_scanners_find_what_they_should():
    assert local_paths("see /home/ana/x.txt and /tmp/pytest-1/book") == ["/home/ana/x.txt", "/tmp/pytest-1/book"]
    assert local_paths("https://example.org/home/page and ../shared/data/abide") == []
    nb = {"cells": [{"outputs": [{"data": {"text/html": "<td>NaN</td><td>1.0</td>"}},
                                 {"data": {"text/plain": "a    NaN\nb    2.0"}},
                                 {"data": {"text/plain": "'NaN-free' text"}}]}]}
    assert len(nan_cells(nb)) == 2


@pytest.mark.slow
def test_executed_chapters_have_no_nan_cells_and_no_corrected_accuracy(tiny_book):
    executed = sorted((tiny_book.book_dir / "chapters").glob("*.ipynb"))
    assert executed, "no executed chapter"
    for path in executed:
        nb = json.loads(path.read_text())
        assert not nan_cells(nb), f"{path.stem}: NaN in a table: {nan_cells(nb)[:5]}"
        html = "".join("".join(o.get("data", {}).get("text/html", "")) for c in nb["cells"] for o in c.get("outputs", []))
        for label in ("MAE corrected", "MAE (bias-corrected)", "corrected MAE", "r(gap, age) corrected"):
            assert label not in html, f"{path.stem} shows a bias-corrected accuracy column ({label})"


@pytest.mark.slow
def test_no_local_path_anywhere_in_the_html(tiny_book):
    html = tiny_book.book_dir / "_build" / "html"
    for page in html.rglob("*.html"):
        if "_static" in page.parts:
            continue
        found = local_paths(page.read_text(errors="replace"))
        assert not found, f"{page.relative_to(html)} shows a local path: {found[:3]}"
