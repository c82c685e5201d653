"""Colab: make a chapter opened from the book's launch button self-sufficient.

Every chapter has a hidden set-up cell right after its ``parameters`` cell (:func:`setup_cell_source`,
written into the notebooks by ``python -m amage_core.colab add-cells``). Outside Colab it does nothing.
In Colab it clones this repository at the book's branch (both read from ``_config.yml``, the one place
that names the repository), puts the clone on ``sys.path`` and calls :func:`setup`, which

- installs the clone (editable) into Colab's Python with pip, the installed torch held by a
  constraint (Colab's CUDA build is never replaced; the dependency ranges of ``pyproject.toml`` keep
  Colab's numpy, pandas, ... as they are), once per runtime;
- names every package whose version pip changed anyway (a restart of the session is then needed);
- returns the profile the chapter runs on: ``gpu`` when torch sees a GPU, else the chapter's own
  (``demo``); the ``AMAGE_PROFILE`` environment variable overrides both.

This module is imported by the set-up cell *before* the package's dependencies are installed: it
uses the standard library only at import time (PyYAML is imported by :func:`repository` alone).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "_config.yml"
CHAPTERS_DIR = REPO / "chapters"
CLONE_DIR = "/content/amage-net-book"      # where the set-up cell clones to in Colab
SETUP_TAG = "amage-colab-setup"            # marks the set-up cell (with remove-cell: hidden in the book)
PROFILE_ENV = "AMAGE_PROFILE"

_TEMPLATE = '''\
# Colab only (a no-op elsewhere): clone the book at its version, install it beside Colab's torch, pick the gpu profile
import os, subprocess, sys
if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
    url, ref, repo = {url}, {ref}, {target}
    os.path.isdir(repo) or subprocess.run(["git", "clone", "-q", "--depth", "1", "-b", ref, url, repo], check=True)
    sys.path.insert(0, repo); from amage_core import colab; profile = colab.setup(repo, profile)'''


def in_colab() -> bool:
    """True in a Colab kernel (it imports ``google.colab`` at start and sets ``COLAB_RELEASE_TAG``)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def repository(config: Path = CONFIG) -> tuple[str, str]:
    """(url, branch) of the book's repository, from ``_config.yml``'s ``repository`` section."""
    import yaml

    section = (yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).get("repository") or {}
    url, branch = section.get("url"), section.get("branch", "main")
    if not url:
        raise ValueError(f"{config}: repository.url is not set")
    return str(url), str(branch)


def setup_cell_source(url: str | None = None, ref: str | None = None, target: str = CLONE_DIR) -> str:
    """The set-up cell's code; ``url`` and ``ref`` default to :func:`repository`'s."""
    if url is None or ref is None:
        default_url, default_ref = repository()
        url, ref = url or default_url, ref or default_ref
    return _TEMPLATE.format(url=json.dumps(url), ref=json.dumps(ref), target=json.dumps(str(target)))


# --------------------------------------------------------------------------------------------
# In the Colab kernel
# --------------------------------------------------------------------------------------------
def setup(repo_dir: str | Path, profile: str = "demo", gpu_profile: str = "gpu", log=print) -> str:
    """Install the clone ``repo_dir`` (once per runtime) and return the profile to run on.

    ``log`` is ``print``, not a logger: the messages are for the person running the chapter in
    Colab and show under the set-up cell (no logging handler is configured there)."""
    repo_dir = Path(repo_dir).resolve()
    replaced = install(repo_dir, log=log)
    if replaced:
        log("pip replaced packages this session had already imported: "
            + ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(replaced.items()))
            + ". Restart the session (Runtime > Restart session), then run the chapter again.")
    os.chdir(repo_dir)
    chosen = os.environ.get(PROFILE_ENV) or (gpu_profile if _has_gpu() else profile)
    log(f"amage_core from {REPO}; profile {chosen!r}"
        + ("" if os.environ.get(PROFILE_ENV) or _has_gpu() else " (no GPU in this runtime: Runtime > "
           "Change runtime type > T4 GPU for the gpu profile)"))
    return chosen


def install(repo_dir: str | Path, log=print, pip_args: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """``pip install -e repo_dir`` unless this environment already has it; torch held at its version.

    Returns the distributions pip changed that were installed before, ``{name: (old, new)}``
    (empty when nothing was replaced, which the dependency ranges are meant to ensure)."""
    repo_dir = Path(repo_dir).resolve()
    if installed_from(repo_dir):
        return {}
    before = installed_versions()
    cmd = [sys.executable, "-m", "pip", "install", "-q", *pip_args, "-e", str(repo_dir)]
    with tempfile.TemporaryDirectory(prefix="amage-colab-") as tmp:
        if "torch" in before:        # the session's own build (Colab: CUDA) stays, whatever the ranges
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text(f"torch=={before['torch']}\n", encoding="utf-8")
            cmd += ["-c", str(constraints)]
        log(f"installing {repo_dir} and its dependencies (pip, a minute or two the first time)")
        subprocess.run(cmd, check=True)
    importlib.invalidate_caches()
    after = installed_versions()
    return {name: (old, after[name]) for name, old in before.items() if name in after and after[name] != old}


def installed_from(repo_dir: Path) -> bool:
    """True when ``amage-core`` is installed in this environment, editable, from ``repo_dir``.

    Every distribution of that name is looked at: the clone itself, first on ``sys.path``, holds
    the ``amage_core.egg-info`` that setuptools leaves beside an editable install."""
    uri = Path(repo_dir).resolve().as_uri()
    for dist in md.distributions(name="amage-core"):
        info = json.loads(dist.read_text("direct_url.json") or "{}")
        if info.get("url") == uri and info.get("dir_info", {}).get("editable"):
            return True
    return False


def installed_versions() -> dict[str, str]:
    """{normalised distribution name: version} of this environment."""
    out = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name:
            out.setdefault(name, dist.version)
    return out


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# --------------------------------------------------------------------------------------------
# Writing the set-up cell into the chapters (run by a maintainer, not in Colab)
# --------------------------------------------------------------------------------------------
def add_setup_cells(chapters_dir: Path = CHAPTERS_DIR, source: str | None = None, check: bool = False) -> list[Path]:
    """Put the current set-up cell right after each chapter's ``parameters`` cell (replacing an older
    one wherever it is). Idempotent. Returns the notebooks that changed (with ``check``: that would
    change; nothing is written). Only the cell list is touched; the rest of the JSON is kept as is."""
    source = setup_cell_source() if source is None else source
    changed = []
    for path in sorted(Path(chapters_dir).glob("*.ipynb")):
        if path.name.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        cells = [c for c in nb["cells"] if SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
        old = next((c for c in nb["cells"] if SETUP_TAG in c.get("metadata", {}).get("tags", [])), None)
        at = next((i + 1 for i, c in enumerate(cells)
                   if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])), None)
        if at is None:
            raise ValueError(f"{path}: no cell tagged 'parameters' (the set-up cell goes right after it)")
        cell = {"cell_type": "code", "execution_count": None, "id": (old or {}).get("id", "colab-setup"),
                "metadata": {"tags": ["remove-cell", SETUP_TAG]}, "outputs": [],
                "source": source.splitlines(keepends=True)}
        if nb.get("nbformat_minor", 0) < 5 and nb.get("nbformat", 4) == 4:
            cell.pop("id")
        cells.insert(at, cell)
        if cells == nb["cells"]:
            continue
        changed.append(path)
        if not check:
            nb["cells"] = cells
            indent = 1 if text.startswith('{\n "') else 2
            out = json.dumps(nb, indent=indent, ensure_ascii=False) + "\n"
            tmp = path.with_suffix(".ipynb.tmp")
            tmp.write_text(out, encoding="utf-8")
            os.replace(tmp, path)
    return changed


def setup_cell_of(notebook: Path) -> str | None:
    """The set-up cell's source in ``notebook``, or None."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    cell = next((c for c in nb["cells"] if SETUP_TAG in c.get("metadata", {}).get("tags", [])), None)
    return None if cell is None else "".join(cell["source"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amage_core.colab",
                                     description="write the Colab set-up cell into every chapter")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-cells", help="insert or update the set-up cell after each parameters cell")
    add.add_argument("--chapters-dir", type=Path, default=CHAPTERS_DIR)
    add.add_argument("--check", action="store_true", help="only report chapters whose cell is missing or stale")
    args = parser.parse_args(argv)
    changed = add_setup_cells(args.chapters_dir, check=args.check)
    verb = "stale or missing in" if args.check else "updated"
    print(f"{verb} {len(changed)} chapter(s)" + "".join(f"\n  {p}" for p in changed))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
