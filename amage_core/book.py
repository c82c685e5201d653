"""Run the chapters with papermill, then render the book with Jupyter Book.

``amage book --profile demo`` executes ``chapters/*.ipynb`` in order into ``book/chapters/`` (git-
ignored) and runs ``jupyter-book build book/``. A chapter whose notebook, parameters and library code
are unchanged since its last successful execution is not executed again. A failing chapter is named
with its cell; chapters already executed are kept, and the next run resumes from the failed one.

Chapters show library code with ``{literalinclude}`` directives that name it from ``book/chapters/``
(:data:`INCLUDE_PREFIX`); an executed chapter that lands elsewhere (``--book-dir``) gets the path to
``amage_core/`` from where it lands (:func:`_point_includes`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amage_core import io
from amage_core.config import ConfigError, Profile, load_profile

REPO = Path(__file__).resolve().parent.parent
CHAPTERS_DIR = REPO / "chapters"
BOOK_DIR = REPO / "book"
# how a chapter names a library file in a literalinclude: the path from book/chapters/ to amage_core/
INCLUDE_PREFIX = "../../amage_core/"
logger = logging.getLogger(__name__)


class ChapterError(RuntimeError):
    """A chapter failed; the message names the chapter and the cell."""


@dataclass
class ChapterResult:
    name: str
    seconds: float
    reused: bool


def find_chapters(selection: list[str] | None = None, chapters_dir: Path = CHAPTERS_DIR) -> list[Path]:
    """Chapter notebooks in order; ``selection`` keeps those whose name starts with any item."""
    notebooks = sorted(p for p in chapters_dir.glob("*.ipynb") if not p.name.startswith("_"))
    if not selection:
        return notebooks
    chosen = [p for p in notebooks if any(p.stem.startswith(s) or p.stem == s for s in selection)]
    missing = [s for s in selection if not any(p.stem.startswith(s) for p in notebooks)]
    if missing:
        raise ConfigError(f"no chapter matches {missing}; chapters: {[p.stem for p in notebooks]}")
    return chosen


def chapter_parameters(profile: Profile, profile_ref: str, notebook: Path) -> dict[str, Any]:
    """The parameters a chapter receives: ``profile`` plus the profile's book parameters.

    Every name must be declared in the chapter's ``parameters`` cell; an unknown name is an error.
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    params: dict[str, Any] = {"profile": profile_ref}
    params.update(profile.book.parameters)
    params.update(profile.book.chapter_parameters.get(notebook.stem, {}))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ConfigError(
            f"{notebook.name}: parameter(s) {unknown} are not declared in its parameters cell "
            f"(declared: {sorted(declared)})"
        )
    return params


def library_fingerprint() -> str:
    """A hash of the library's source, so chapters re-run when the code they call changes."""
    h = hashlib.sha256()
    for path in sorted((REPO / "amage_core").rglob("*")):
        if path.suffix in {".py", ".yml"}:
            h.update(path.relative_to(REPO).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _stamp(notebook: Path, params: dict, fingerprint: str) -> str:
    h = hashlib.sha256(notebook.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(fingerprint.encode())
    return h.hexdigest()[:16]


def run_chapters(
    profile_ref: str,
    selection: list[str] | None = None,
    force: bool = False,
    chapters_dir: Path = CHAPTERS_DIR,
    book_dir: Path = BOOK_DIR,
    log=logger.info,
    log_cells: bool = False,
) -> list[ChapterResult]:
    """Execute the selected chapters in order with papermill into ``book_dir/chapters``.

    ``log`` receives one progress line per chapter (default: this module's logger; ``amage book``
    prints them)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out_dir = Path(book_dir) / "chapters"
    profile = load_profile(profile_ref)
    notebooks = find_chapters(selection or profile.book.chapters or None, chapters_dir)
    plan = [(nb, chapter_parameters(profile, profile_ref, nb)) for nb in notebooks]  # validate all first
    stamps_path = out_dir / "_stamps.json"
    stamps: dict[str, str] = io.read_json(stamps_path) if stamps_path.exists() else {}
    fingerprint = library_fingerprint()
    results = []
    for i, (nb, params) in enumerate(plan, 1):
        target = out_dir / nb.name
        stamp = _stamp(nb, params, fingerprint)
        if not force and target.exists() and stamps.get(nb.stem) == stamp:
            log(f"[{i}/{len(plan)}] {nb.stem}: unchanged, reusing {target}")
            results.append(ChapterResult(nb.stem, 0.0, True))
            continue
        log(f"[{i}/{len(plan)}] {nb.stem}: executing with {params}")
        stamps.pop(nb.stem, None)
        io.write_json(stamps_path, stamps)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb), str(target), parameters=params, cwd=str(REPO), progress_bar=True,
                log_output=log_cells, request_save_on_cell_execute=True,
                execution_timeout=profile.book.timeout_per_cell,
            )
        except PapermillExecutionError as exc:
            line = next((ln.strip() for ln in (exc.source or "").splitlines() if ln.strip()), "")
            raise ChapterError(
                f"chapter {nb.stem} failed in cell {exc.exec_count} (`{line[:80]}`: {exc.ename}: "
                f"{exc.evalue}); the executed notebook with the traceback is {target}; chapters before "
                f"it are kept, re-run to resume from this chapter"
            ) from None
        except Exception as exc:       # the kernel died, a cell timed out (nbclient), ...
            reason = (str(exc).strip().splitlines() or [""])[0]
            raise ChapterError(
                f"chapter {nb.stem} failed ({type(exc).__name__}: {reason}); the notebook as far as "
                f"it ran is {target}; chapters before it are kept, re-run to resume from this chapter"
            ) from exc
        seconds = time.perf_counter() - t0
        _prepare_for_html(target)
        stamps[nb.stem] = stamp
        io.write_json(stamps_path, stamps)
        log(f"[{i}/{len(plan)}] {nb.stem}: done in {seconds:.1f} s")
        results.append(ChapterResult(nb.stem, seconds, False))
    record_timings(out_dir, profile.name, results)
    return results


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine slows every measurement."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def record_timings(out_dir: Path, profile: str, results: list[ChapterResult],
                   html_seconds: float | None = None) -> None:
    """Record the run in ``out_dir/_timings.json``, per profile: ``chapters`` (each chapter's latest
    execution time) and ``last_run`` (this run: wall seconds, executed and reused chapters, the HTML
    build's seconds, load averages). A run that executed every chapter measures the whole book."""
    path = Path(out_dir) / "_timings.json"
    data = io.read_json(path) if path.is_file() else {}
    if not isinstance(data.get("profiles"), dict):
        data = {"profiles": {}}          # the earlier flat format mixed profiles: start again
    entry = data["profiles"].setdefault(profile, {"chapters": {}})
    entry["chapters"].update({r.name: round(r.seconds, 1) for r in results if not r.reused})
    chapters_seconds = sum(r.seconds for r in results)
    entry["last_run"] = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "executed": [r.name for r in results if not r.reused],
        "reused": [r.name for r in results if r.reused],
        "chapters_seconds": round(chapters_seconds, 1),
        "html_seconds": None if html_seconds is None else round(html_seconds, 1),
        "wall_seconds": round(chapters_seconds + (html_seconds or 0.0), 1),
        "load_average_end": load_average(),
    }
    io.write_json(path, data)


def _prepare_for_html(notebook: Path) -> None:
    """Ready an executed chapter for Jupyter Book: hide its parameters cells, point its includes."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    _hide_parameter_cells(nb)
    _point_includes(nb, Path(notebook).parent)
    with io.atomic_write(notebook, "w", encoding="utf-8") as fh:
        nbformat.write(nb, fh)


def _hide_parameter_cells(nb) -> None:
    """Tag the parameters cells (the chapter's defaults and papermill's injected values, which may
    hold local paths) ``remove-cell`` so the rendered page does not show them."""
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]


_INCLUDE = re.compile(r"^(```\{literalinclude\}\s+)" + re.escape(INCLUDE_PREFIX), re.MULTILINE)


def _point_includes(nb, folder: Path) -> None:
    """Rewrite ``{literalinclude} ../../amage_core/...`` in markdown cells to the relative path from
    ``folder`` (where the executed chapter lies) to this repository's ``amage_core/``: unchanged in
    ``book/chapters/``."""
    prefix = Path(os.path.relpath(REPO / "amage_core", Path(folder).resolve())).as_posix() + "/"
    if prefix == INCLUDE_PREFIX:
        return
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _INCLUDE.sub(lambda m: m.group(1) + prefix, cell.source)


def build_html(book_dir: Path = BOOK_DIR, log=logger.info) -> Path:
    """Render ``book_dir`` with ``jupyter-book build``; fail on warnings about missing files."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(book_dir), "--path-output", str(book_dir)]
    log(f"building the book: jupyter-book build {book_dir} --path-output {book_dir}")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    problems = [
        line for line in output.splitlines()
        if re.search(r"WARNING|ERROR", line) and not _not_yet_executed(line, book_dir)
    ]
    if proc.returncode != 0 or problems:
        raise RuntimeError(
            "jupyter-book build failed:\n" + ("\n".join(problems) or output[-4000:])
        )
    index = book_dir / "_build" / "html" / "index.html"
    return index


def _not_yet_executed(line: str, book_dir: Path) -> bool:
    """A cross-reference to a chapter that exists in chapters/ but was not executed into the book
    yet (``amage book --chapters 05`` on a fresh clone): expected, not a broken link."""
    match = re.search(r"unknown document: '([^']+)'", line)
    if not match:
        return False
    name = Path(match.group(1)).name
    return (CHAPTERS_DIR / f"{name}.ipynb").is_file() and not (book_dir / "chapters" / f"{name}.ipynb").is_file()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="demo", help="demo, paper, or a path to a profile YAML")
    parser.add_argument("--chapters", nargs="+", metavar="NN",
                        help="only these chapters (prefixes such as 05 or 05_fusion), in order")
    parser.add_argument("--force", action="store_true", help="execute even unchanged chapters")
    parser.add_argument("--verbose", action="store_true",
                        help="stream each cell's output (training progress bars) to the terminal")
    parser.add_argument("--no-html", action="store_true", help="execute chapters but do not render")
    parser.add_argument("--book-dir", type=Path, default=BOOK_DIR,
                        help="book source folder (default: book/); executed chapters go to BOOK_DIR/chapters")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    results = run_chapters(args.profile, args.chapters, force=args.force, book_dir=args.book_dir,
                           log=print, log_cells=args.verbose)
    for r in results:
        print(f"  {r.name:<32} {'reused' if r.reused else f'{r.seconds:7.1f} s'}")
    if not args.no_html:
        t_html = time.perf_counter()
        index = build_html(args.book_dir, log=print)
        record_timings(Path(args.book_dir) / "chapters", load_profile(args.profile).name, results,
                       html_seconds=time.perf_counter() - t_html)
        print(f"book built in {time.perf_counter() - t0:.0f} s: open {index}")
    return 0
