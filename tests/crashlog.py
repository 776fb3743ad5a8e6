"""Why a test worker died. An xdist worker that ends without saying goodbye is reported as
"node down: Not properly terminated" and nothing else: two full runs of 2026-12-01/02 lost a
worker that way (on ``test_conformance.py::test_stop_leaves_nothing_running…``) with no trace to
start from. Each worker now keeps a small log — the test it starts and ends, and the stacks of
every thread on a fatal signal (faulthandler), on SIGTERM, and on ``os._exit`` (pytest-timeout's
thread method and the worker watchdog end a process that way) — and the controller prints the
tail of every log whose worker died in a test at the end of the run.

Registered from ``tests/conftest.py``; a test-process diagnostic only, nothing of the product.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import tempfile
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

ENV = "HUB_TEST_CRASHLOG_DIR"
_log: IO[str] | None = None


def configure(config: pytest.Config) -> None:
    """Controller: make the folder (the workers it spawns inherit the variable). Worker: open its log."""
    global _log
    worker = getattr(config, "workerinput", None)
    if worker is None:
        os.environ.setdefault(ENV, tempfile.mkdtemp(prefix="hub-test-crashlog-"))
        return
    folder = os.environ.get(ENV)
    if not folder:
        return
    _log = open(Path(folder) / f"{worker['workerid']}-{os.getpid()}.log", "a", buffering=1)
    faulthandler.enable(_log, all_threads=True)
    faulthandler.register(signal.SIGTERM, _log, all_threads=True, chain=True)
    real_exit = os._exit

    def exit_with_stacks(status: int) -> NoReturn:
        if _log is not None:
            _log.write(f"os._exit({status}) called; every thread:\n")
            faulthandler.dump_traceback(_log, all_threads=True)
            _dump_tasks(_log)
            _log.flush()
        real_exit(status)

    os._exit = exit_with_stacks


def _dump_tasks(out: IO[str]) -> None:
    """Every unfinished asyncio task with where it waits: an idle loop's thread stack shows only
    ``select``, and the task that never ends is what the hang is (read from the timeout thread, so
    best effort: the set may change while it is read)."""
    try:
        tasks = [t for t in list(asyncio.tasks._all_tasks) if not t.done()]  # type: ignore[attr-defined]
    except Exception as exc:  # a diagnostic must never hide the real failure
        out.write(f"(asyncio tasks not readable: {exc!r})\n")
        return
    out.write(f"{len(tasks)} unfinished asyncio tasks:\n")
    for task in tasks[:60]:
        try:
            task.print_stack(limit=6, file=out)
        except Exception as exc:
            out.write(f"  {task.get_name()}: stack not readable ({exc!r})\n")


def test_started(nodeid: str) -> None:
    if _log is not None:
        _log.write(f"start {nodeid}\n")


def test_ended(nodeid: str) -> None:
    if _log is not None:
        _log.write(f"end {nodeid}\n")


def report(terminal: Any) -> None:
    """Controller, end of the run: the tail of each worker log that stops inside a test."""
    folder = os.environ.get(ENV)
    if not folder or not Path(folder).is_dir():
        return
    for path in sorted(Path(folder).glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        last_end = max((i for i, line in enumerate(lines) if line.startswith("end ")), default=-1)
        tail = lines[last_end + 1:]
        if any(line.startswith("start ") for line in tail) or any("Fatal Python" in line or "_exit" in line
                                                                    for line in tail):
            terminal.write_sep("=", f"worker log {path.name}: died inside a test")
            for line in tail[-200:]:
                terminal.write_line(line)
