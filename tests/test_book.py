"""The foundation: the package imports, the CLI answers, chapters are clean, the book builds."""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys
import textwrap
from html import unescape
from pathlib import Path

import nbformat
import pytest
import yaml

import amage_core
from amage_core import book
from amage_core.cli import SUBCOMMANDS
from amage_core.config import ConfigError

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))
# library code a chapter shows with {literalinclude} ... :pyobject: (issue 18): chapter -> (module, object)
INCLUDED = {
    "03_fmri_encoder": [("amage_core.models.gat", "GraphEncoder.forward")],
    "04_smri_encoder": [("amage_core.models.densenet", "DenseNetEncoder.forward"),
                        ("amage_core.models.tokens", "GridTokens.forward")],
    "05_fusion": [("amage_core.models.fusion", "Fusion.forward"), ("amage_core.models.fusion", "GatedFusion.forward"),
                  ("amage_core.models.amagenet", "BrainAgeModel.readout")],
}
_DIRECTIVE = re.compile(r"```\{literalinclude\}\s+(\S+)\n(?::.*\n)*?:pyobject:\s+(\S+)")


def library_source(module: str, obj: str) -> str:
    """The source of ``module.obj`` (``obj`` may be ``Class.method``), dedented as the book shows it."""
    target = importlib.import_module(module)
    for part in obj.split("."):
        target = getattr(target, part)
    return textwrap.dedent(inspect.getsource(target))


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


def test_cli_shows_the_library_log_messages_and_only_warnings_of_others():
    """The library logs (no handler of its own); `amage` shows amage_core's INFO lines as plain text."""
    code = ("import logging; from amage_core.cli import configure_logging; configure_logging(); "
            "logging.getLogger('amage_core.data.prepare').info('QC: 3 included'); "
            "logging.getLogger('papermill').info('Input Notebook: x'); logging.getLogger('papermill').warning('w')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stderr == "QC: 3 included\nw\n", proc.stderr


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


def includes(path: Path) -> list[tuple[str, str]]:
    """(file, pyobject) of each ``{literalinclude}`` in the markdown cells of a chapter."""
    nb = json.loads(path.read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return _DIRECTIVE.findall(text)


def test_chapters_include_the_library_code_they_name():
    """Each include names, from book/chapters/ (where `amage book` puts the executed chapter), a module
    of amage_core and an object in it; chapters 03-05 show the encoders' and the fusion's code."""
    found = {}
    for path in CHAPTERS:
        for file, obj in includes(path):
            assert file.startswith(book.INCLUDE_PREFIX), f"{path.name}: {file} is not under {book.INCLUDE_PREFIX}"
            source = (REPO / "book" / "chapters" / file).resolve()
            assert source.is_file(), f"{path.name} includes {file}, which does not exist"
            module = ".".join(source.relative_to(REPO).with_suffix("").parts)
            assert library_source(module, obj)
            found.setdefault(path.stem, []).append((module, obj))
    assert {k: found.get(k) for k in INCLUDED} == INCLUDED


def test_includes_point_at_the_library_from_any_book_folder(tmp_path):
    """`amage book --book-dir` elsewhere: the executed chapter's include path is rewritten to reach
    this repository's amage_core/ from where the chapter lies; in book/chapters/ it is unchanged."""
    nb = nbformat.read(REPO / "chapters" / "03_fmri_encoder.ipynb", as_version=4)
    original = [c.source for c in nb.cells]
    book._point_includes(nb, REPO / "book" / "chapters")
    assert [c.source for c in nb.cells] == original
    folder = tmp_path / "elsewhere" / "chapters"
    folder.mkdir(parents=True)
    book._point_includes(nb, folder)
    files = [file for file, _ in _DIRECTIVE.findall("\n".join(c.source for c in nb.cells))]
    assert files and all((folder / f).resolve() == REPO / "amage_core" / "models" / "gat.py" for f in files)


def test_architecture_page_names_modules_that_exist():
    """book/architecture.md names modules by path (`amage_core/train/`, `train/loop.py`, ...): each exists."""
    text = (REPO / "book" / "architecture.md").read_text()
    paths = set(re.findall(r"`(amage_core/[\w*/]+)`", text)) | set(re.findall(r"`([a-z_]+/[\w/]+\.py)`", text))
    assert len(paths) > 20
    package = REPO / "amage_core"
    missing = [p for p in sorted(paths) if not list(package.glob(p.removeprefix("amage_core/")))]
    assert not missing, f"book/architecture.md names modules that do not exist: {missing}"


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
        # the library code it includes, all of it (issue 18)
        shown = unescape(re.sub(r"<[^>]+>", "", text))
        for module, obj in INCLUDED.get(chapter.stem, []):
            assert library_source(module, obj) in shown, f"{chapter.stem} does not show {module}.{obj}"
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
