"""Supervised background tasks: a source's consumer or poller that dies is restarted with backoff.

A source never creates a bare ``asyncio.Task`` for its work loop: it asks its context,
``context.supervise(name, run)``, and gets a :class:`Supervised` it stops in ``stop``. When ``run``
raises — or its task is cancelled by anything but ``stop`` — the supervisor logs it, waits
(exponential backoff with jitter, ``RestartPolicy``) and calls ``run`` again; ``run`` must therefore
(re)connect whatever it needs, so a restarted consumer starts from its committed position.

Health is reported, not hidden: while it waits the task is ``restarting``; after
``fail_after`` failures in a row it is ``failed`` (still retried, at most every ``max_s``) until
one run lasts ``stable_s``. The route manager listens (``on_change``) and shows the route's state
on ``/readyz`` and in ``hub_route_up`` — a Kafka consumer that died is no longer shown "running".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hub.stopping import cancel_until_done

log = logging.getLogger(__name__)

RUNNING, RESTARTING, FAILED, STOPPED = "running", "restarting", "failed", "stopped"


@dataclass(frozen=True)
class RestartPolicy:
    """How a dead background task is restarted: ``initial_s`` · ``multiplier``^(n-1), at most
    ``max_s``, plus up to ``jitter_s``; ``fail_after`` failures in a row make it *failed*; a run that
    lasts ``stable_s`` clears the count."""

    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 30.0
    jitter_s: float = 0.1
    fail_after: int = 3
    stable_s: float = 30.0

    def delay(self, failures: int) -> float:
        base = min(self.max_s, self.initial_s * self.multiplier ** max(failures - 1, 0))
        return base + random.uniform(0, self.jitter_s)


DEFAULT_POLICY = RestartPolicy()



class Supervised:
    """One supervised background task (see the module docstring)."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]], *, policy: RestartPolicy = DEFAULT_POLICY,
                 on_change: Callable[[Supervised], None] | None = None) -> None:
        self.name = name
        self.policy = policy
        self.state = RUNNING
        self.error: str | None = None
        self.failures = 0  # in a row
        self.restarts = 0  # since start
        self.current: asyncio.Task[None] | None = None  # the run in progress (what "killing" it cancels)
        self._run = run
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> Supervised:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=self.name)
        return self

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Cancel the run and the supervisor and wait for both; the run's own errors are logged."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_until_done(task)
        self._set(STOPPED, self.error)

    def _set(self, state: str, error: str | None) -> None:
        changed = (state, error) != (self.state, self.error)
        self.state, self.error = state, error
        if changed and self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:  # a listener's bug must not kill the supervisor
                log.exception("supervised %s: state listener failed", self.name)

    async def _supervise(self) -> None:
        while True:
            run = asyncio.ensure_future(self._run())
            run.set_name(f"{self.name}/run")
            self.current = run
            started = time.monotonic()
            try:
                done, _ = await asyncio.wait({run}, timeout=self.policy.stable_s)
                if not done:  # it has lasted: whatever failed before is over
                    self.failures = 0
                    self._set(RUNNING, None)
                    await asyncio.wait({run})
                run.result()  # raises what the run raised (or CancelledError if it was killed)
                error = "returned (a source's work loop must not end on its own)"
            except asyncio.CancelledError:
                if self._stopping or not run.cancelled():
                    await cancel_until_done(run)
                    raise  # stop(): the supervisor itself was cancelled
                error = "task was cancelled"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self.current = None
            if time.monotonic() - started >= self.policy.stable_s:
                self.failures = 0
            self.failures += 1
            delay = self.policy.delay(self.failures)
            failed = self.failures >= self.policy.fail_after
            log.error("%s died (%s); restart %d in %.1fs%s", self.name, error, self.restarts + 1, delay,
                      f" — {self.failures} failures in a row, shown as failed" if failed else "")
            self._set(FAILED if failed else RESTARTING, error)
            await asyncio.sleep(delay)
            self.restarts += 1
            if not failed:
                self._set(RUNNING, None)
