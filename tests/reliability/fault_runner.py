"""Run the ``amage`` command line with a fault injected, for the kill/resume tests.

    python fault_runner.py [--slow T=SECONDS] [--kill T=N[@TEXT]] [--count T=FILE] -- <amage args>

``T`` is ``module:attribute`` (``os:replace``, ``torch.optim:Adam.step``, ...); the attribute is
wrapped before the command runs:

- ``--kill T=N[@TEXT]``: the process sends itself SIGKILL just before the N-th call of ``T`` whose
  arguments' repr contains ``TEXT`` (a real SIGKILL: no cleanup, no ``finally``, no atexit).
- ``--slow T=SECONDS``: sleep after every call (widens the window for an external kill).
- ``--count T=FILE``: append one line to ``FILE`` per call (how much work a run really did).

The command itself is ``amage_core.cli.main`` (what the ``amage`` entry point calls).
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
import time


def _resolve(target: str):
    module, _, attr = target.partition(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _wrap(target: str, before=None, after=None) -> None:
    owner, name = _resolve(target)
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if before is not None:
            before(args, kwargs)
        result = original(*args, **kwargs)
        if after is not None:
            after(args, kwargs)
        return result

    setattr(owner, name, wrapper)


def _split(spec: str) -> tuple[str, str]:
    target, sep, value = spec.rpartition("=")
    if not sep:
        raise SystemExit(f"fault_runner: expected TARGET=VALUE, got {spec!r}")
    return target, value


def main(argv: list[str]) -> int:
    if "--" not in argv:
        raise SystemExit("fault_runner: separate the amage arguments with --")
    i = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", action="append", default=[])
    parser.add_argument("--kill", action="append", default=[])
    parser.add_argument("--count", action="append", default=[])
    opts = parser.parse_args(argv[:i])
    for spec in opts.slow:
        target, seconds = _split(spec)
        _wrap(target, after=lambda a, k, s=float(seconds): time.sleep(s))
    for spec in opts.count:
        target, path = _split(spec)

        def count(args, kwargs, path=path):
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("1\n")

        _wrap(target, before=count)
    for spec in opts.kill:
        target, value = _split(spec)
        n, _, text = value.partition("@")
        calls = [0]

        def kill(args, kwargs, n=int(n), text=text, calls=calls):
            if text and text not in repr(args) + repr(kwargs):
                return
            calls[0] += 1
            if calls[0] == n:
                sys.stdout.flush()
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        _wrap(target, before=kill)
    from amage_core.cli import main as amage

    return amage(argv[i + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
