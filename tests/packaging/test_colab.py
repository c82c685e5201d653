"""The chapters' Colab set-up cell (amage_core.colab): written into every chapter from one template,
a no-op outside Colab, and in a simulated Colab it clones and installs the local repository, after
which each chapter imports the clone and runs on the tiny profile."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amage_core import colab

REPO = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))


def test_repository_comes_from_the_book_config():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    url, ref = colab.repository()
    assert (url, ref) == (config["repository"]["url"], config["repository"]["branch"])
    assert f'"{url}", "{ref}"' in colab.setup_cell_source()
    assert config["launch_buttons"]["colab_url"] and config["launch_buttons"]["binderhub_url"]


def test_colab_module_needs_the_standard_library_only():
    """The set-up cell imports amage_core.colab before the dependencies are installed."""
    code = ("import sys; import amage_core.colab as c; c.setup_cell_source('u', 'r'); "
            "print(sorted(m for m in ('yaml', 'numpy', 'torch', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_setup_cell_is_a_noop_outside_colab(tmp_path, monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    target = tmp_path / "clone"
    namespace = {"profile": "demo"}
    exec(colab.setup_cell_source("file:///nonexistent", "main", str(target)), namespace)
    assert namespace["profile"] == "demo" and not target.exists()
    assert not colab.in_colab()


def test_add_setup_cells_is_idempotent_and_keeps_chapters_clean(tmp_path):
    for path in CHAPTERS:
        shutil.copy(path, tmp_path / path.name)
    source = colab.setup_cell_source("https://example.org/x", "v1")
    assert len(colab.add_setup_cells(tmp_path, source)) == len(CHAPTERS) or all(
        colab.setup_cell_of(p) == source for p in CHAPTERS)
    assert colab.add_setup_cells(tmp_path, source) == []                      # a second run changes nothing
    assert colab.add_setup_cells(tmp_path, source.replace("v1", "v2"), check=True) == sorted(tmp_path.glob("*.ipynb"))
    for path in sorted(tmp_path.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        tags = [c["metadata"].get("tags", []) for c in code]
        assert "parameters" in tags[0] and colab.SETUP_TAG in tags[1] and "remove-cell" in tags[1], path.name
        assert sum(colab.SETUP_TAG in t for t in tags) == 1
        assert "".join(code[1]["source"]) == source and not code[1]["outputs"]
        assert len(source.splitlines()) <= 15
        original = json.loads((REPO / "chapters" / path.name).read_text())["cells"]
        assert [c for c in nb["cells"] if colab.SETUP_TAG not in c["metadata"].get("tags", [])] == \
            [c for c in original if colab.SETUP_TAG not in c.get("metadata", {}).get("tags", [])]


def test_check_mode_writes_nothing(tmp_path):
    shutil.copy(CHAPTERS[0], tmp_path / CHAPTERS[0].name)
    before = (tmp_path / CHAPTERS[0].name).read_bytes()
    colab.main(["add-cells", "--chapters-dir", str(tmp_path), "--check"])
    assert (tmp_path / CHAPTERS[0].name).read_bytes() == before


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_the_current_setup_cell(path):
    assert colab.setup_cell_of(path) == colab.setup_cell_source(), (
        f"{path.name}: the Colab set-up cell is missing or stale: run `python -m amage_core.colab add-cells`")


@pytest.mark.slow
def test_setup_cell_clones_and_installs_in_simulated_colab(colab_env):
    assert colab_env.clone.joinpath("amage_core", "colab.py").is_file()
    assert f"amage_core from {colab_env.clone}; profile 'tiny-from-env'" in colab_env.setup_output
    assert "PROFILE tiny-from-env" in colab_env.setup_output
    proc = subprocess.run([str(colab_env.python), "-c", "import amage_core; print(amage_core.__file__)"],
                          capture_output=True, text=True, check=True, cwd="/", env=colab_env.env("demo"))
    assert proc.stdout.strip() == str(colab_env.clone / "amage_core" / "__init__.py")


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_in_simulated_colab(path, colab_env, tiny_book, tmp_path):
    """The chapter, with its set-up cell pointing at the local repository, executed by papermill in
    the simulated Colab kernel: the cell finds the clone installed, selects the profile (the tiny one,
    through AMAGE_PROFILE), and the chapter runs on the clone. Cohorts and runs are the tiny book's
    (same workdir, so nothing is trained a second time)."""
    shutil.copy(path, tmp_path / path.name)
    colab.add_setup_cells(tmp_path, colab_env.cell())
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(tmp_path / path.name), str(out), "-k", "colab-sim",
         "-p", "profile", "demo", "--cwd", str(tmp_path), "--no-progress-bar"],
        capture_output=True, text=True, env=colab_env.env(tiny_book.profile), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    nb = json.loads(out.read_text())
    setup = next(c for c in nb["cells"] if colab.SETUP_TAG in c["metadata"].get("tags", []))
    text = "".join("".join(o.get("text", "")) for o in setup["outputs"])
    assert f"amage_core from {colab_env.clone}; profile '{tiny_book.profile}'" in text, text
    assert "installing" not in text                      # installed once per runtime, by the first cell run


def test_installed_from_looks_past_the_clones_own_egg_info(tmp_path, monkeypatch):
    """The clone is first on sys.path in the Colab kernel and holds setuptools' egg-info (no
    direct_url.json): the editable install's dist-info must still be found."""
    clone, site = tmp_path / "clone", tmp_path / "site"
    (clone / "amage_core.egg-info").mkdir(parents=True)
    (clone / "amage_core.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: amage-core\nVersion: 0.1.0\n")
    (site / "amage_core-0.1.0.dist-info").mkdir(parents=True)
    (site / "amage_core-0.1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: amage-core\nVersion: 0.1.0\n")
    (site / "amage_core-0.1.0.dist-info" / "direct_url.json").write_text(
        json.dumps({"url": clone.resolve().as_uri(), "dir_info": {"editable": True}}))
    monkeypatch.setattr(sys, "path", [str(clone), str(site)])
    assert colab.installed_from(clone)
    assert not colab.installed_from(tmp_path / "elsewhere")
