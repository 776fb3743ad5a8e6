"""MongoDB through motor: one client per process, and every collection's indexes declared here
(``INDEXES``) so each query path is indexed — SecantusDB scans are slow, real MongoDB's too at scale.
Components add their own collections with :func:`declare_indexes` at import time.

:class:`DbHealth` is the database circuit for paths that answer a partner while it waits (intake):
with MongoDB down, every operation would pay the whole server-selection timeout (5 s, measured
5.1–10.5 s per 503) before failing. The circuit opens on the first connection failure, then fails
fast (no database round trip) until a background ping succeeds; the intake's own client selects a
server for at most :data:`INTAKE_SERVER_SELECTION_MS`, so the first detection is bounded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import ASCENDING, IndexModel
from pymongo.errors import ConnectionFailure

from hub.errors import BrokerUnavailable, RetryableError
from hub.metrics import DEPENDENCY_UP
from hub.mongostats import CommandStats
from hub.settings import Settings
from hub.stopping import cancel_until_done

log = logging.getLogger(__name__)

INTAKE_SERVER_SELECTION_MS = 1000  # a partner waits for the answer: fail within ~1 s, not 5
PROBE_INTERVAL_S = 0.5  # background ping while the circuit is open

INDEXES: dict[str, list[IndexModel]] = {}
COMMAND_STATS = CommandStats()  # one listener for every client of the process (hub_mongo_* counters)


RETIRED: dict[str, set[str]] = {}


def declare_indexes(collection: str, *indexes: IndexModel) -> None:
    INDEXES.setdefault(collection, []).extend(indexes)


def retire_indexes(collection: str, *names: str) -> None:
    """Indexes an earlier version created and nothing needs any more: dropped by :func:`ensure_indexes`
    (every index costs every write of its collection)."""
    RETIRED.setdefault(collection, set()).update(names)


def connect(settings: Settings, *, server_selection_ms: int | None = None) -> AsyncIOMotorClient[Any]:
    """A motor client. ``server_selection_ms``: how long an operation waits for a reachable server
    (default ``mongo_timeout_ms``); latency-sensitive paths (intake) pass a lower bound."""
    selection = settings.mongo_timeout_ms if server_selection_ms is None else min(
        server_selection_ms, settings.mongo_timeout_ms)
    return AsyncIOMotorClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=selection,
        connectTimeoutMS=settings.mongo_timeout_ms,
        tz_aware=True,
        appname=settings.worker_id,
        # SecantusDB prunes its retryable-write registry with a scan on every write (a third of its CPU
        # under the flow benchmark); real MongoDB keeps retryable writes.
        retryWrites=not settings.mongo_embedded,
        event_listeners=[COMMAND_STATS],
        **durable_writes(settings.mongo_uri),
    )


def durable_writes(uri: str) -> dict[str, Any]:
    """Acknowledged means journaled (``j: true``), unless the URI chooses its own write concern.

    Why: an acknowledgement without the journal is a promise the server can break — a ``kill -9``
    of the embedded SecantusDB lost the last ~12 % of 300 acknowledged inserts (0 of 300 with
    ``j``), and with them orders the engine had committed on Kafka: found by
    tests/integration/test_flow_v2_faults.py (an order document gone after the outage, its
    partner's callback refused as "not waiting"). Real MongoDB defaults to journaled majority
    writes; the embedded one does not. Cost measured with single inserts: 1.05 → 1.36 ms; the
    hub's batched writes pay it once per batch."""
    query = uri.partition("?")[2].lower()
    options = {part.partition("=")[0] for part in query.split("&") if part}
    return {} if options & {"journal", "w", "wtimeoutms"} else {"journal": True}


def database(client: AsyncIOMotorClient[Any], settings: Settings) -> AsyncIOMotorDatabase[Any]:
    return client[settings.mongo_db]


async def ensure_indexes(db: AsyncIOMotorDatabase[Any]) -> None:
    """Create every declared index and drop the retired ones (idempotent)."""
    for name, indexes in INDEXES.items():
        if indexes:
            await db[name].create_indexes(indexes)
    for name, retired in RETIRED.items():
        existing = {i["name"] async for i in db[name].list_indexes()}
        for index in sorted(retired & existing):
            await db[name].drop_index(index)


declare_indexes("intake_keys", IndexModel([("created_at", ASCENDING)], name="by_created"))
# by_order: nothing reads intake records by order (lookups are by key, recovery by time), and on the
# embedded SecantusDB each secondary index costs every insert. insert_many of 100, j: true, loopback,
# 2-core VM: claim + record 0.98 ms of database time per accepted order with both indexes, 0.68 with
# by_created alone (2026-12-03).
retire_indexes("intake_keys", "by_order")


class DatabaseUnavailable(RetryableError):
    """MongoDB is known to be down (circuit open): answered at once, the partner retries later."""


def is_connection_failure(exc: BaseException | None) -> bool:
    """True for "the database is not reachable" (not for a bad query or a duplicate key), looking
    through the ``raise … from`` chain, since callers wrap driver errors in the hub's own."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ConnectionFailure | DatabaseUnavailable):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class DbHealth:
    """Circuit breaker for one MongoDB client: closed (up) or open (down, failing fast).

    Opened by :meth:`observe` when an operation fails for lack of a server; while open,
    :meth:`check` raises :class:`DatabaseUnavailable` without touching the network, and one
    background task pings every :data:`PROBE_INTERVAL_S` until the server answers again.
    """

    def __init__(self, client: AsyncIOMotorClient[Any], *, name: str = "mongo",
                 probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self._client = client
        self._name = name
        self._interval = probe_interval_s
        self.up = True
        self.down_since: float | None = None
        self.last_error: str | None = None
        self._probe: asyncio.Task[None] | None = None
        DEPENDENCY_UP.labels(name).set(1)

    def check(self) -> None:
        """Raise :class:`DatabaseUnavailable` at once while the circuit is open."""
        if not self.up:
            raise DatabaseUnavailable(f"MongoDB down for {time.monotonic() - (self.down_since or 0):.1f}s "
                                      f"({self.last_error}); not retried until a ping succeeds")

    def observe(self, exc: BaseException) -> bool:
        """Open the circuit if ``exc`` says the server is unreachable; True if it did (or was open).

        Callers often re-raise driver errors as the hub's own without the cause attached, so a
        retryable error that is not the broker's also counts when the driver itself no longer knows
        a writable server (its topology, no network round trip)."""
        if isinstance(exc, DatabaseUnavailable):
            return True
        if is_connection_failure(exc) or (
                isinstance(exc, RetryableError) and not isinstance(exc, BrokerUnavailable) and not self._writable()):
            self.mark_down(exc)
            return True
        return False

    def _writable(self) -> bool:
        try:
            return bool(self._client.delegate.topology_description.has_writable_server())
        except Exception:  # an unexpected driver shape must not turn every error into "down"
            return True

    def mark_down(self, exc: BaseException) -> None:
        self.last_error = _short(exc)
        if self.up:
            self.up = False
            self.down_since = time.monotonic()
            DEPENDENCY_UP.labels(self._name).set(0)
            log.warning("%s unreachable (%s): failing fast until a ping succeeds", self._name, self.last_error)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._until_up(), name=f"{self._name}-health")

    def mark_up(self) -> None:
        if not self.up:
            log.info("%s answers again after %.1fs: circuit closed", self._name,
                     time.monotonic() - (self.down_since or time.monotonic()))
        self.up = True
        self.down_since = None
        self.last_error = None
        DEPENDENCY_UP.labels(self._name).set(1)

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Fail fast while down; an operation inside that cannot reach the server opens the circuit."""
        self.check()
        try:
            yield
        except Exception as exc:
            self.observe(exc)
            raise

    async def ping(self, timeout: float = 2.0) -> bool:
        """One round trip; updates the circuit either way (used by /readyz and the probe)."""
        try:
            await asyncio.wait_for(self._client.admin.command("ping"), timeout)
        except Exception as exc:
            if is_connection_failure(exc) or isinstance(exc, TimeoutError):
                self.mark_down(exc)
            return False
        self.mark_up()
        return True

    def describe(self) -> dict[str, Any]:
        """For /readyz: the circuit's state and why."""
        if self.up:
            return {"circuit": "closed"}
        return {"circuit": "open", "down_for_s": round(time.monotonic() - (self.down_since or 0), 1),
                "error": self.last_error}

    async def _until_up(self) -> None:
        while not self.up:
            await asyncio.sleep(self._interval)
            await self.ping(timeout=max(self._interval * 2, 1.0))

    async def close(self) -> None:
        if self._probe is not None:
            await cancel_until_done(self._probe)
            self._probe = None


def _short(exc: BaseException) -> str:
    text = str(exc).split(", Timeout:")[0]  # pymongo appends the whole topology description
    return f"{type(exc).__name__}: {text[:200]}"
