"""Stopping background tasks so that they are gone when the stop returns.

One helper, used wherever a component cancels a task it owns and waits for it (sources' supervisors,
the broker watch, the route reloader, the database probe, job heartbeats, the wireless pipeline).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_until_done(task: asyncio.Future[Any], every: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``every`` seconds.

    Why not ``task.cancel(); await task``: on Python 3.11 ``asyncio.wait_for`` swallows a cancellation
    that arrives just as its inner call completes (gh-86296, fixed in 3.12), so a single cancel can be
    lost and the await never returns. A source stopped right as its SFTP connect finished left a test
    worker waiting until pytest-timeout killed it after 300 s (``test_stop_leaves_nothing_running…
    [sftp]``, three full runs of 2026-12-01/02). Cancellations of the caller while it waits are
    taken as "go on cancelling" (whoever stops a task wants it gone; leaving now would orphan it) and
    passed on once the task has ended.
    """
    tries, interrupted = 0, False
    while not task.done():
        task.cancel()
        tries += 1
        try:
            await asyncio.wait({task}, timeout=every)
        except asyncio.CancelledError:
            interrupted = True
    if tries > 1:
        log.warning("task %s needed %d cancellations to stop", _name(task), tries)
    if not task.cancelled():
        task.exception()  # retrieved: its own errors are already logged by whoever ran it
    if interrupted:
        raise asyncio.CancelledError  # the caller's own cancellation, passed on once the task is gone


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
