"""Dependencies: ranges in pyproject.toml, their floors in requirements/lowest.txt, the exact tested set
in requirements/lock.txt (what `make` and CI install), and an install into a stack that is already
there replaces none of it."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pkg_env import PREINSTALLED, make_venv, pip, snapshot

REPO = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["book"] + extras["dev"]]


def test_ranges_floors_and_lock_agree():
    lowest, lock = _pins(REPO / "requirements/lowest.txt"), _pins(REPO / "requirements/lock.txt")
    assert "torch" not in lock and "amage-core" not in lock
    for req in _requirements():
        name = canonicalize_name(req.name)
        ops = {s.operator for s in req.specifier}
        assert ops == {">="}, f"{req}: a lower bound only (upper bounds where a release is known to break)"
        if name == "torch":
            continue            # no CPU wheel of an older torch on the test machines: see lowest.txt
        floor = next(iter(req.specifier)).version
        if req.marker is None and name not in {"pytest", "hypothesis", "playwright"}:
            assert lowest.get(name) == floor, f"{req}: its floor is not the tested lowest.txt version"
        assert name in lock, f"{req.name} is not in requirements/lock.txt"
        assert req.specifier.contains(lock[name], prereleases=True), f"lock {name}=={lock[name]} outside {req}"


def test_make_installs_the_lock():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"pip install .*-c \$\(LOCK\)", makefile) and "LOCK := requirements/lock.txt" in makefile
    assert "make test" in (REPO / ".ci/run").read_text()


@pytest.mark.slow
def test_install_keeps_the_stack_already_there(colab_env):
    """The set-up cell's install (pip, dependencies resolved, torch held) in an environment holding
    numpy, pandas, ipykernel and nbformat at versions other than the lock's: none is replaced."""
    before, after = colab_env.before, colab_env.after
    for name, version in {**PREINSTALLED, "torch": before["torch"]}.items():
        assert before[name] == version or name == "torch"
        assert after[name] == version, f"{name} was replaced: {version} -> {after[name]}"
    replaced = {k: (v, after[k]) for k, v in before.items() if k in after and after[k] != v}
    assert not replaced, f"the install replaced {replaced}"
    assert "amage-core" in after and "monai" in after


@pytest.mark.slow
def test_core_runs_on_the_lowest_supported_versions(tmp_path):
    """pyproject's floors (requirements/lowest.txt) installed in a fresh environment, then the core
    end to end there (tests/packaging/core_smoke.py)."""
    python = make_venv(tmp_path / "venv")
    (tmp_path / "src").mkdir()
    snapshot(tmp_path / "src")
    pip(python, "install", "-q", "-c", str(REPO / "requirements/lowest.txt"), str(tmp_path / "src"))
    proc = subprocess.run([str(python), str(REPO / "tests/packaging/core_smoke.py"), str(tmp_path / "work")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "core ok" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    lowest = _pins(REPO / "requirements/lowest.txt")
    ran = ast.literal_eval(proc.stdout.splitlines()[0])      # the versions core_smoke printed
    for name, version in ran.items():
        if canonicalize_name(name) in lowest:
            assert version == lowest[canonicalize_name(name)], f"{name} {version} is not the floor"


def test_binder_builds_from_pyproject_with_the_cpu_torch():
    """repo2docker reads binder/ (and then ignores the top-level environment.yml): Python and pip
    from binder/environment.yml, then postBuild installs the cpu extra's torch and the package."""
    import yaml

    env = yaml.safe_load((REPO / "binder/environment.yml").read_text())
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"]) and "pip" in env["dependencies"]
    post = REPO / "binder/postBuild"
    assert post.stat().st_mode & 0o111, "binder/postBuild must be executable"
    text = post.read_text()
    assert "download.pytorch.org/whl/cpu" in text and "pip install --no-cache-dir -e ." in text
    spec = subprocess.run(["bash", "-c", "sed -n 's/^cpu = \\[\"\\(torch==[^\"]*\\)\"\\]/\\1/p' pyproject.toml"],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert spec == "torch==2.13.0"
