"""The book's benchmarks page builds without warnings, with and without results."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from amage_core.book import build_html

REPO = Path(__file__).resolve().parents[2]
CONFIG = """title: bench page test
only_build_toc_files: true
execute:
  execute_notebooks: "off"
sphinx:
  local_extensions:
    bench_results: book/_ext
"""
TOC = "format: jb-book\nroot: benchmarks\n"


@pytest.mark.slow
def test_benchmarks_page_builds_with_and_without_results(tmp_path):
    book = tmp_path / "book"
    (book / "_ext").mkdir(parents=True)
    shutil.copy(REPO / "book" / "_ext" / "bench_results.py", book / "_ext")
    shutil.copy(REPO / "book" / "benchmarks.md", book)
    (tmp_path / "_config.yml").write_text(CONFIG)
    (book / "_toc.yml").write_text(TOC)

    page = build_html(book, log=lambda *_: None).parent / "benchmarks.html"   # raises on any warning
    assert "No full benchmark has been run" in page.read_text()

    (book / "benchmarks").mkdir()
    (book / "benchmarks" / "latest.md").write_text("## Accuracy\n\n| model | MAE |\n|---|---|\n| amagenet | 4.20 |\n")
    shutil.rmtree(book / "_build")
    page = (build_html(book, log=lambda *_: None).parent / "benchmarks.html").read_text()
    assert "amagenet" in page and "4.20" in page and "No full benchmark" not in page


def test_page_is_in_the_appendix():
    toc = (REPO / "book" / "_toc.yml").read_text()
    assert "file: benchmarks" in toc.split("Appendix", 1)[1]
    assert "bench_results: book/_ext" in (REPO / "_config.yml").read_text()
