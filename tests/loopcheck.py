"""The test-suite guard against a blocked event loop (issue "House layout" §5).

Every test runs with :class:`LoopMonitor` installed (autouse fixture in ``tests/conftest.py``): each
callback the event loop runs on the main thread is timed, and a callback that kept the loop busy for
more than ``threshold_s`` fails the test, naming the callback (the coroutine or handler) and how long
it took.

"Busy" is the CPU time of the loop thread (system time included), not wall time. CI runs the suite
on a shared 2-core machine beside the broker, the database and sshd: a callback that was merely
descheduled for 150 ms blocked nothing, while YAML, XML or JSON work, hashing or file reads on the
loop burn the loop thread's own CPU — exactly what the rule forbids. A callback that *sleeps* in a
blocking call (``time.sleep``, a blocking socket, ``subprocess.run``) burns no CPU; it is caught by
wall time instead, with a margin no scheduler delay reaches (``wall_limit_s``, 1 s).

A callback can also be *descheduled* past that margin when the machine is saturated (several
suites at once on 2 cores: 16 ms CPU over 1.1 s wall was seen). So the wall check counts only
time the thread was neither running nor waiting for a CPU — off the run queue, i.e. blocked in a
call — from Linux's ``/proc/thread-self/schedstat`` (run-queue wait), read at most every 20 ms.

A full garbage collection that happens to start inside a callback is not counted: with faust,
zeep and the test harness loaded a generation-2 pass takes 60–95 ms CPU on these machines
(measured with ``gc.callbacks``), so any callback it lands in would look blocked, at random. GC
pauses are the interpreter's, not work a callback put on the loop; the time is still reported.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SlowCallback:
    what: str
    cpu_s: float  # garbage collection excluded
    wall_s: float
    gc_s: float = 0.0
    queued_s: float = 0.0  # waiting for a CPU (machine busy): not blocking, not counted

    def __str__(self) -> str:
        gc_note = f" (+{self.gc_s * 1000:.0f} ms GC)" if self.gc_s >= 0.001 else ""
        queued = f", {self.queued_s * 1000:.0f} ms waiting for a CPU" if self.queued_s >= 0.001 else ""
        return f"{self.what}: {self.cpu_s * 1000:.0f} ms CPU{gc_note}, {self.wall_s * 1000:.0f} ms wall{queued}"


class LoopMonitor:
    """Times every ``asyncio.Handle`` run on the thread that installed it."""

    def __init__(self, threshold_s: float = 0.1, wall_limit_s: float = 1.0) -> None:
        self.threshold_s = threshold_s
        self.wall_limit_s = wall_limit_s
        self.slow: list[SlowCallback] = []
        self._thread = threading.get_ident()
        self._gc_s = 0.0  # GC CPU time on the loop thread since install
        self._gc_started: float | None = None
        self._queued_at = -1.0  # perf_counter of the last run-queue reading (refreshed every 20 ms)
        self._queued = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._gc_started = time.thread_time()
        elif self._gc_started is not None:
            self._gc_s += time.thread_time() - self._gc_started
            self._gc_started = None

    @contextmanager
    def installed(self) -> Iterator[LoopMonitor]:
        original = asyncio.events.Handle._run
        monitor = self

        def timed_run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != monitor._thread:
                original(handle)
                return
            wall0, cpu0, gc0 = time.perf_counter(), time.thread_time(), monitor._gc_s
            if wall0 - monitor._queued_at > 0.02:
                monitor._queued_at, monitor._queued = wall0, _run_queue_wait()
            queued0 = monitor._queued
            try:
                original(handle)
            finally:
                wall = time.perf_counter() - wall0
                if wall > monitor.threshold_s:
                    gc_s = monitor._gc_s - gc0
                    cpu = time.thread_time() - cpu0 - gc_s
                    monitor._queued_at, monitor._queued = time.perf_counter(), _run_queue_wait()
                    queued = max(0.0, monitor._queued - queued0)
                    if cpu > monitor.threshold_s or wall - gc_s - queued > monitor.wall_limit_s:
                        monitor.slow.append(SlowCallback(_describe(handle), cpu, wall, gc_s, queued))

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]  # test-only instrumentation
        gc.callbacks.append(self._on_gc)
        try:
            yield self
        finally:
            asyncio.events.Handle._run = original  # type: ignore[method-assign]
            gc.callbacks.remove(self._on_gc)


def _run_queue_wait() -> float:
    """Seconds this thread has waited on a run queue (Linux schedstat); 0.0 where unavailable."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _describe(handle: asyncio.Handle) -> str:
    cb: Any = getattr(handle, "_callback", None)
    task = getattr(cb, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        return f"task {task.get_name()} ({getattr(coro, '__qualname__', coro)}){where}"
    return repr(handle)
