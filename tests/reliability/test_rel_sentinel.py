"""Privacy sentinel: the rendered book never shows participant identifiers of a real-data cohort.

Two tiny synthetic datasets are turned into plain BIDS datasets whose participants are called
``sub-SENTINELA0001`` ... (ground truth removed, as real data has none), the profile points both
cohorts at them with ``source: bids``, the whole book is built, and no file of the HTML output
(pages, search index, notebook sources, static data) may contain one of these identifiers. Identifiers drawn
inside images (PNG) cannot be searched this way; figures are checked by their alt text only.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amage_core.config import SynthConfig
from rel_helpers import REPO, env, tiny_profile

SENTINEL = "SENTINEL"


def sentinel_dataset(cfg: SynthConfig, out: Path, tag: str) -> Path:
    """A synthetic cohort as a real BIDS dataset would look, its IDs renamed sub-<SENTINEL><tag>NNNN."""
    from amage_core.synth import generate_cohort

    src = generate_cohort(cfg, out.with_name(out.name + "-synthetic"), progress=False)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("truth"))
    rename = re.compile(r"sub-(\d{4})")
    new = f"sub-{SENTINEL}{tag}\\1"
    for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):   # deepest first
        if path.is_file() and path.suffix in (".tsv", ".json"):
            path.write_text(rename.sub(new, path.read_text()))
        if rename.search(path.name):
            path.rename(path.with_name(rename.sub(new, path.name)))
    shutil.rmtree(src)
    assert SENTINEL in (out / "participants.tsv").read_text()
    return out


@pytest.mark.slow
def test_the_book_built_on_real_data_sources_shows_no_participant_id(tmp_path):
    camcan = sentinel_dataset(SynthConfig(preset="camcan-like", n_subjects=48, seed=11, voxel_size=8.0,
                                          n_bold_nifti=0, n_volumes=60), tmp_path / "source-a", "A")
    oasis3 = sentinel_dataset(SynthConfig(preset="oasis3-like", n_subjects=24, seed=12, voxel_size=8.0,
                                          n_bold_nifti=0, n_volumes=60), tmp_path / "source-b", "B")
    profile = tiny_profile(tmp_path / "real.yml", tmp_path / "work", epochs=1,
                           cohorts={"camcan": {"source": "bids", "root": str(camcan)},
                                    "oasis3": {"source": "bids", "root": str(oasis3)}},
                           prep={"min_volumes": 50}, train={"batch_size": 8})
    assert yaml.safe_load(profile.read_text())["cohorts"]["camcan"]["source"] == "bids"
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(REPO / "book", tmp_path / "book",
                    ignore=shutil.ignore_patterns("_build", "chapters", "__pycache__"))
    book_dir = tmp_path / "book"
    proc = subprocess.run([sys.executable, "-m", "amage_core", "book", "--profile", str(profile),
                           "--book-dir", str(book_dir)], capture_output=True, text=True, cwd=REPO, env=env())
    assert proc.returncode == 0, "amage book failed on real-data (bids) sources:\n" + proc.stderr[-3000:]

    html = book_dir / "_build" / "html"
    pages = list(html.rglob("*"))
    assert any(p.name == "index.html" for p in pages) and len(pages) > 20
    ids = re.compile(rb"SENTINEL[AB]\d{4}")         # case-sensitive: a folder name may say "sentinel"
    leaks = [str(p.relative_to(html)) for p in pages if p.is_file() and ids.search(p.read_bytes())]
    assert not leaks, f"participant identifiers appear in the rendered book: {leaks}"
    # the chapters did run on these cohorts (a book of errors, or of other data, would leak nothing)
    for name, tag in (("camcan", "A"), ("oasis3", "B")):
        prepared, = (tmp_path / "work" / "prepared").glob(f"{name}-*")
        assert f"sub-{SENTINEL}{tag}" in (prepared / "participants.tsv").read_text()
    executed = (book_dir / "chapters" / "02_data.ipynb").read_text()
    assert "bids" in executed and "Traceback" not in executed
