"""Job kinds by name: what a ``kind:`` in ``config/jobs/*.yaml`` runs.

Explicit like app/plugins.py: the modules that define kinds are listed in :data:`KIND_MODULES` and
imported in order; each registers its kinds with :func:`job_kind`. A job kind is an async function
of a :class:`JobContext` returning the run's counts (``{"records": 1200, "files": 1}``), which
the history keeps; raising fails the attempt (retried up to the job's ``max_attempts``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from app.jobs.config import JobConfig
from app.jobs.lease import Lease, Leases
from hub.partners import Partner
from hub.settings import Settings

KIND_MODULES = ("app.reports.jobs", "app.jobs.seed003")


@dataclass
class JobContext:
    """What a run is given: settings, partners and the database (the same in the worker and in
    ``hub jobs run``), the job, this run's slot and parameters, and the fence (``await ctx.fence()``
    right before a write that a second holder could also make)."""

    settings: Settings
    partners: dict[str, Partner]
    db: AsyncIOMotorDatabase[Any]
    job: JobConfig
    run_id: str
    slot: datetime | None
    now: datetime
    lease: Lease
    leases: Leases
    params: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("app.jobs.run"))

    async def fence(self) -> None:
        await self.leases.check(self.lease)

    @property
    def when(self) -> datetime:
        """The run's reference time: its slot, or (manual run) the time it started."""
        return self.slot or self.now


JobKind = Callable[[JobContext], Awaitable[dict[str, Any]]]
_KINDS: dict[str, JobKind] = {}


def job_kind(name: str) -> Callable[[JobKind], JobKind]:
    def register(fn: JobKind) -> JobKind:
        if name in _KINDS and _KINDS[name] is not fn:
            raise ValueError(f"job kind {name!r} registered twice")
        _KINDS[name] = fn
        return fn

    return register


def kinds() -> dict[str, JobKind]:
    for module in KIND_MODULES:
        importlib.import_module(module)
    return dict(_KINDS)
