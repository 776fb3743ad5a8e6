"""What the console's overview and flow pages count, over the same collections and filters as the CLI.

Listings and single documents come from the admin service layer (app/admin/queries.py: masked);
this module only *counts* — C.1's numbers, the product × stage matrix, the API failure rate per
hour, the open orders per blueprint node — with the filters of that layer (``OrderFilter``,
``DeadLetterFilter``, ``CallFilter``) so a number on the page is the length of the list its link
opens. Nothing here returns a field of an order, so nothing needs masking.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from app.admin.queries import CallFilter, DeadLetterFilter, OrderFilter, Queries
from flows.documents import CALLS, ORDERS

OPEN = ["in_flight", "waiting"]
#: "about to be overdue": the SLA deadline falls within this much (C.1 即将超时)
DUE_SOON = timedelta(hours=1)
FAILED = ("failed", "dead_lettered")


async def overview(db: AsyncIOMotorDatabase, queries: Queries, now: datetime | None = None) -> dict[str, Any]:
    """C.1's counts, the matrix, pending dead letters and the hourly failure rate, queried together."""
    now = now or datetime.now(UTC)
    orders = db[ORDERS]
    open_q = {"status": {"$in": OPEN}}
    matrix_job = asyncio.ensure_future(_matrix(db))
    series_job = asyncio.ensure_future(failure_series(db, now=now))
    in_flight, overdue, due_soon, stuck, pending = await asyncio.gather(
        orders.count_documents(open_q),
        orders.count_documents(OrderFilter(overdue=True).query(now)),
        orders.count_documents({**open_q, "sla_deadline": {"$gte": now, "$lt": now + DUE_SOON}}),
        orders.count_documents({**open_q, "blocked_reason": {"$ne": None}}),
        queries.count_dead_letters(DeadLetterFilter()),
    )
    matrix, series = await matrix_job, await series_job
    last = [p for p in series if p["total"]]
    hour = series[-1] if series else {"total": 0, "failed": 0}
    return {"in_flight": in_flight, "overdue": overdue, "due_soon": due_soon, "stuck": stuck,
            "dead_pending": pending, "matrix": matrix, "series": series,
            "failure_rate": (100.0 * hour["failed"] / hour["total"]) if hour["total"] else None,
            "failure_rate_24h": (100.0 * sum(p["failed"] for p in last) / sum(p["total"] for p in last))
            if last else None}


async def _matrix(db: AsyncIOMotorDatabase) -> dict[tuple[str, str], int]:
    """Open orders per (product, current stage): the gauge ``hub_orders_in_flight``'s query."""
    out: dict[tuple[str, str], int] = {}
    async for d in db[ORDERS].aggregate([{"$match": {"status": {"$in": OPEN}}},
                                         {"$group": {"_id": {"product": "$product", "stage": "$current_stage"},
                                                     "n": {"$sum": 1}}}]):
        key = d["_id"] or {}
        out[(str(key.get("product") or "-"), str(key.get("stage") or "-"))] = int(d["n"])
    return out


async def failure_series(db: AsyncIOMotorDatabase, *, now: datetime, hours: int = 24) -> list[dict[str, Any]]:
    """Finished calls per hour over the last ``hours`` (by ``started_at``, the ``by_time`` index), and
    how many failed: one count per hour and outcome class, so the cost is index ranges, not rows."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    buckets = [end - timedelta(hours=hours - i) for i in range(hours)]
    calls = db[CALLS]

    async def bucket(start: datetime) -> dict[str, Any]:
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
