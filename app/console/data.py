"""What the console's overview and flow pages count, over the same collections and filters as the CLI.

Listings and single documents come from the admin service layer (app/admin/queries.py: masked);
this module only *counts* — C.1's numbers, the product × stage matrix, the API failure rate per
hour, the open orders per blueprint node — with the filters of that layer (``OrderFilter``,
``DeadLetterFilter``, ``CallFilter``) so a number on the page is the length of the list its link
opens. Nothing here returns a field of an order, so nothing needs masking.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from app.admin.queries import CallFilter, DeadLetterFilter, Queries
from flows.documents import CALLS, ORDERS

OPEN = ["in_flight", "waiting"]
#: "about to be overdue": the SLA deadline falls within this much (C.1 即将超时)
DUE_SOON = timedelta(hours=1)
FAILED = ("failed", "dead_lettered")


class Snapshots:
    """The overview's numbers, computed at most every ``ttl_s`` (or twice as long as the last
    computation took) by one task per process, whoever asks; a page gets the newest snapshot and its
    time ("as of …"), and waits only when there is none yet.

    Why: every open console refreshes the overview every few seconds, and each of these counts
    touches every open order (an index range, but each matching document is read on a database
    that counts by fetching: SecantusDB ~0.3 ms a document). Ten operators must not mean ten times
    the load, and a page must not wait for a count that a refresh is already computing. Hours of
    the failure-rate chart that have ended are kept ``past_ttl_s`` (rows for them are rarely
    written late), so a refresh counts the current hour only."""

    def __init__(self, ttl_s: float = 5.0, past_ttl_s: float = 600.0) -> None:
        self.ttl_s, self.past_ttl_s = ttl_s, past_ttl_s
        self.value: dict[str, Any] | None = None
        self.at = 0.0
        self.took_s = 0.0
        self.hours: dict[datetime, tuple[float, dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, db: AsyncIOMotorDatabase, queries: Queries) -> dict[str, Any]:
        stale = time.monotonic() - self.at > max(self.ttl_s, 2 * self.took_s)
        if (self.value is None or stale) and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._refresh(db, queries), name="console-overview")
        if self.value is None and self._task is not None:
            await asyncio.shield(self._task)
        assert self.value is not None
        return self.value

    async def _refresh(self, db: AsyncIOMotorDatabase, queries: Queries) -> None:
        started = time.monotonic()
        value = await overview(db, queries, hours=self.hours, past_ttl_s=self.past_ttl_s)
        self.took_s = time.monotonic() - started
        self.value, self.at = {**value, "as_of": datetime.now(UTC), "took_s": self.took_s}, time.monotonic()


async def overview(db: AsyncIOMotorDatabase, queries: Queries, now: datetime | None = None, *,
                   hours: dict[datetime, tuple[float, dict[str, Any]]] | None = None,
                   past_ttl_s: float = 600.0) -> dict[str, Any]:
    """C.1's counts, the matrix, pending dead letters and the hourly failure rate, queried together."""
    now = now or datetime.now(UTC)
    series_job = asyncio.ensure_future(failure_series(db, now=now, cache=hours, past_ttl_s=past_ttl_s))
    pending = await queries.count_dead_letters(DeadLetterFilter())
    counts = await open_orders(db, now)
    series = await series_job
    last = [p for p in series if p["total"]]
    hour = series[-1] if series else {"total": 0, "failed": 0}
    return {**counts, "dead_pending": pending, "series": series,
            "failure_rate": (100.0 * hour["failed"] / hour["total"]) if hour["total"] else None,
            "failure_rate_24h": (100.0 * sum(p["failed"] for p in last) / sum(p["total"] for p in last))
            if last else None}


async def open_orders(db: AsyncIOMotorDatabase, now: datetime) -> dict[str, Any]:
    """C.1's order counts and the product × stage matrix from **one** pass over the open orders
    (the ``by_status_created`` index's status prefix, four fields each): five counts would read every open order five
    times. The definitions are the listings': open = ``status`` in_flight|waiting (``OrderFilter``'s
    ``overdue`` adds ``sla_deadline < now``), held = ``blocked_reason`` set (the engine's "why it does
    not move on")."""
    matrix: dict[tuple[str, str], int] = {}
    n = overdue = due_soon = stuck = 0
    cursor = db[ORDERS].find({"status": {"$in": OPEN}},
                             {"_id": 0, "product": 1, "current_stage": 1, "sla_deadline": 1, "blocked_reason": 1})
    async for d in cursor:
        n += 1
        key = (str(d.get("product") or "-"), str(d.get("current_stage") or "-"))
        matrix[key] = matrix.get(key, 0) + 1
        deadline = d.get("sla_deadline")
        if isinstance(deadline, datetime):
            deadline = deadline if deadline.tzinfo else deadline.replace(tzinfo=UTC)
            overdue += deadline < now
            due_soon += now <= deadline < now + DUE_SOON
        stuck += d.get("blocked_reason") is not None
    return {"in_flight": n, "overdue": overdue, "due_soon": due_soon, "stuck": stuck, "matrix": matrix}


async def failure_series(db: AsyncIOMotorDatabase, *, now: datetime, hours: int = 24,
                         cache: dict[datetime, tuple[float, dict[str, Any]]] | None = None,
                         past_ttl_s: float = 600.0) -> list[dict[str, Any]]:
    """Finished calls per hour over the last ``hours`` (by ``started_at``, the ``by_time`` index), and
    how many failed: two counts per hour. An hour that ended over a minute ago is taken from
    ``cache`` while younger than ``past_ttl_s``."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    buckets = [end - timedelta(hours=hours - i) for i in range(hours)]
    calls = db[CALLS]
    cache = cache if cache is not None else {}
    for old in [h for h in cache if h < buckets[0]]:
        del cache[old]

    async def bucket(start: datetime) -> dict[str, Any]:
        cached = cache.get(start)
        if cached is not None and time.monotonic() - cached[0] < past_ttl_s:
            return cached[1]
        point = await count(start)
        if start + timedelta(hours=1, minutes=1) < now:  # the hour is over: it stays as counted
            cache[start] = (time.monotonic(), point)
        return point

    async def count(start: datetime) -> dict[str, Any]:
        q = CallFilter(since=start, until=start + timedelta(hours=1)).query()
        total, failed = await asyncio.gather(
            calls.count_documents({**q, "outcome": {"$in": ["ok", *FAILED]}}),
            calls.count_documents({**q, "outcome": {"$in": list(FAILED)}}))
        return {"hour": start, "label": start.strftime("%H:00"), "total": total, "failed": failed,
                "rate": (100.0 * failed / total) if total else None}

    return list(await asyncio.gather(*(bucket(b) for b in buckets)))


async def node_counts(db: AsyncIOMotorDatabase) -> dict[str, dict[str, int]]:
    """Open orders per blueprint and node (every token's node: a parallel order counts at each)."""
    out: dict[str, dict[str, int]] = {}
    cursor = db[ORDERS].find({"status": {"$in": OPEN}}, {"blueprint": 1, "current_nodes": 1, "current_stage": 1})
    async for d in cursor:
        nodes = d.get("current_nodes") or ([d["current_stage"]] if d.get("current_stage") else [])
        per = out.setdefault(str(d.get("blueprint") or "-"), {})
        for n in set(nodes):
            per[n] = per.get(n, 0) + 1
    return out
