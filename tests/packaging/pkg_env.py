"""Fresh virtual environments for the packaging tests, kept fast.

- torch is not installed but *linked*: the project's own torch (the CPU build, ~1 GB unpacked) is put
  on the new environment's path by a ``.pth`` file holding only torch's folders and its dist-info, so
  pip sees it installed (and keeps it) and never downloads a torch; its small dependencies (sympy,
  networkx, setuptools, ...) are installed with it, at the lock's versions, as in any environment
  that holds a torch.
- everything else comes through pip's ordinary channels (PyPI, the machine's configured indexes)
  with pip's download cache, so a second run downloads nothing.
- :func:`snapshot` copies the working tree (tracked and untracked, not ignored files) into a new git
  repository, so a clone of it is what a user would clone, uncommitted edits included.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# a notebook server's own stack, simulated: versions other than the lock's (numpy and pandas other
# than the floors too; the kernel packages at their floors)
PREINSTALLED = {"numpy": "2.2.6", "pandas": "3.0.6", "ipykernel": "6.29.5", "nbformat": "5.10.4"}


def make_venv(path: Path) -> Path:
    """A new virtual environment at ``path`` with the project's torch linked in; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    torch = md.distribution("torch")
    site = Path(torch.locate_file(""))
    link_dir = path / "torch-link"
    link_dir.mkdir()
    tops = {Path(str(f)).parts[0] for f in torch.files or [] if not str(f).startswith("..")}
    for name in sorted(tops):
        (link_dir / name).symlink_to(site / name)
    Path(purelib, "zz-torch-link.pth").write_text(str(link_dir) + "\n")
    # torch's own requirements (setuptools, sympy, ...), as any environment that holds a torch has them
    requires = [r for r in torch.requires or [] if "extra ==" not in r]
    pip(python, "install", "-q", "-c", str(REPO / "requirements/lock.txt"), *requires)
    return python


def pip(python: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def versions(python: Path) -> dict[str, str]:
    """{normalised name: version} of every distribution ``python`` sees."""
    code = ("import importlib.metadata as md, json; print(json.dumps({(d.metadata['Name'] or '').lower()"
            ".replace('_', '-'): d.version for d in md.distributions()}))")
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def snapshot(dst: Path) -> str:
    """The working tree as a one-commit git repository at ``dst`` (branch main); returns its file:// URL."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() and not src.is_symlink():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q", "-b", "main"], cwd=dst, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dst, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], cwd=dst, check=True)
    return dst.resolve().as_uri()
