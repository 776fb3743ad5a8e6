"""Embedded-server processes: a stopped server is reaped, several stop at once."""

from __future__ import annotations

import time
from pathlib import Path

from app.infra.process import ManagedProcess


def _sleeper(tmp_path: Path, name: str) -> ManagedProcess:
    return ManagedProcess(name, tmp_path / "run", tmp_path / "logs", marker="sleep")


def test_stop_reaps_the_child_it_stopped(tmp_path: Path) -> None:
    """A stopped child must not stay a zombie (``hub run`` left every server it started as one)."""
    proc = _sleeper(tmp_path, "sleeper")
    pid = proc.start(["sleep", "60"])
    assert proc.pid() == pid
    assert proc.stop(timeout=5)
    assert not Path(f"/proc/{pid}").exists(), "stopped child left as a zombie (not reaped)"
    assert not proc.pid_file.exists()


def test_terminate_then_wait_stops_several_at_once(tmp_path: Path) -> None:
    """SIGTERM to all first, then wait: a server that ignores SIGTERM costs its timeout once, not per server."""
    stubborn = [_sleeper(tmp_path, f"stubborn{i}") for i in range(3)]
    pids = [p.start(["sh", "-c", "trap '' TERM; exec sleep 60"]) for p in stubborn]
    time.sleep(0.3)  # let sh install the trap before exec
    t0 = time.monotonic()
    deadline = t0 + 1.0
    signalled = [(p, p.terminate()) for p in stubborn]
    for p, pid in signalled:
        assert pid is not None
        p.wait_stopped(pid, deadline)
    assert time.monotonic() - t0 < 2.5  # one 1 s timeout, then SIGKILL, for all three
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
