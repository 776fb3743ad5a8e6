"""A managed server process: start detached, pid file, log file, readiness poll, stop.

Why detached (new session): ``hub infra up`` returns while the servers keep running, and
``hub infra down`` (or another shell) stops them later through the pid file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.infra.private import CHILD_UMASK, private_dir, private_file
from hub.errors import HubError


class InfraError(HubError):
    """An embedded server could not be started or stopped."""


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass
class ManagedProcess:
    """One server process known by its pid file; ``marker`` guards against pid reuse."""

    name: str
    run_dir: Path
    log_dir: Path
    marker: str

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return pid
        return pid if self.marker in cmdline else None

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        """Start ``argv`` detached. Its folders are 0700, its log 0600, and it runs with umask 077:
        the data it writes (customer orders in the embedded database) is its owner's only."""
        private_dir(self.run_dir)
        private_dir(self.log_dir)
        with os.fdopen(private_file(self.log_file), "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                umask=CHILD_UMASK,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM, wait, then SIGKILL. Returns True if a process was stopped."""
        pid = self.terminate()
        if pid is None:
            return False
        self.wait_stopped(pid, time.monotonic() + timeout)
        return True

    def terminate(self) -> int | None:
        """Send SIGTERM and return the pid (None: nothing was running). With :meth:`wait_stopped`
        it lets a caller stop several servers at once instead of one after the other."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return pid

    def wait_stopped(self, pid: int, deadline: float) -> None:
        """Wait until ``pid`` exited (SIGKILL at ``deadline``), and reap it if it is our child.

        Why the reap: a child that exited is a zombie until its parent waits for it, and
        :func:`pid_alive` counts a zombie as dead — so without it ``hub run`` left every server it
        started as a zombie until it exited itself. Why wait for the reap itself, not for "looks
        dead": a multi-threaded server (SecantusDB's storage threads) shows its leader as ``Z``
        while its other threads are still being torn down, and cannot be reaped yet; a stop that
        returned then left a zombie no one reaps once ``hub run`` exited (PID 1 here does not)."""
        def gone() -> bool:
            return _reap(pid) and not pid_alive(pid)

        while time.monotonic() < deadline and not gone():
            time.sleep(0.05)
        if not gone():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(gone, 5.0, 0.05)
        self.pid_file.unlink(missing_ok=True)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _reap(pid: int) -> bool:
    """Collect ``pid``'s exit status if it is a child of this process. True when there is nothing
    left for us to wait for: reaped now, or not our child (then :func:`pid_alive` decides)."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return True
    return done == pid


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
