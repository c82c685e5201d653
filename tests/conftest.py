"""Shared test fixtures."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (CI has it; a user's clone does not: skip cleanly)."""
    path = REPO.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (only CI and the development machines have it)")
    return path


@dataclass
class BuiltBook:
    book_dir: Path
    profile: Path
    command: list[str]
    output: str


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory) -> BuiltBook:
    """The whole book executed and rendered once per session on tests/profiles/tiny.yml, in a temporary
    copy of the book's sources (the user's book/ is never touched)."""
    root = tmp_path_factory.mktemp("tinybook")
    spec = yaml.safe_load((REPO / "tests/profiles/tiny.yml").read_text())
    spec["workdir"] = str(root / "data")
    profile = root / "tiny.yml"
    profile.write_text(yaml.safe_dump(spec))
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("_build", "chapters", "__pycache__"))
    book_dir = root / "book"
    command = [sys.executable, "-m", "amage_core", "book", "--profile", str(profile), "--book-dir", str(book_dir)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        pytest.fail("amage book failed on the tiny profile:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    return BuiltBook(book_dir, profile, command, proc.stdout)
