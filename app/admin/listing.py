"""Orders newest first, in ``created_at`` windows walked backwards — the one listing behind
``hub orders list``, ``GET /admin/v1/orders`` and the console's orders page (issues 14, 15).

Why windows: the listing sorts by ``created_at`` and limits. A real MongoDB walks ``by_created``
backwards and stops after ``limit`` documents; SecantusDB (the embedded database of the default run
and the tests) does not stop early. Read in its source (``secantus/storage.py``, ``find_matching``):

* an empty filter with a sort on an indexed field walks the whole index and decodes **every**
  document before it limits (``_walk_index_in_order`` → ``_docs_by_recordids``);
* a filter is served by one index clause at most: a range on a single-field index is a bounded
  seek (``_range_scan_index`` starts at the bound and stops at the other), an equality / ``$in``
  a prefix lookup — then every candidate is decoded, matched, sorted, and only then limited;
* with several clauses it takes the *first* clause (in the filter's order) that an index serves,
  so ``{status: …, created_at: …}`` fetched every order of that status, ``{created_at: …, status: …}``
  only the window's orders;
* ``count`` and ``distinct`` read every document too: nothing answers "how many" or "the oldest" cheaply.

So a page is a few queries over disjoint windows ``[lo, hi)`` of ``created_at`` — the window clause
first, so ``by_created`` bounds what is read — from the newest backwards, each sized from the match
rate seen so far, until ``skip + limit`` orders are found; only keys (``_id``, ``created_at``) are
fetched while walking, the page's documents are then read by ``_id`` within the page's time span.
A window holds every order of its time
span, so the newest ``n`` of the concatenation are the newest ``n`` of the whole range: the answer
is the plain query's. After ``OPEN_AFTER`` of history the rest is one open-ended query with the
filter's own clauses first (a filter that rare is cheaper through its own index: status, stage,
partner). A status or a stage is served in each window by ``by_status_created`` /
``by_stage_created``, which hold only the matching orders; the other filters (product, partner,
scenario, overdue) read the window's orders and match them. On a real MongoDB each window is an
index range too (the same indexes serve ``status`` + newest first there).

Measured (``python -m bench.console``, 100,000 orders on SecantusDB, 2 cores): a 1 h window (120
orders) 41 ms, 8 h 186 ms, the same 1 h window with ``status`` as the first clause 2,210 ms; the
unfiltered ``/admin/v1/orders`` was 26.7 s (a 500 past the 30 s budget) before. Figures after: docs/console.md.
A creation-hour bucket field with ``$in`` lookups was considered and not needed: a ``created_at``
range on ``by_created`` is already a bounded seek, the same cost per order as an ``$in`` of hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorCollection
from pymongo import ASCENDING, DESCENDING, IndexModel

from flows.documents import ORDERS
from hub.db import declare_indexes

#: a window with a status or a stage: SecantusDB serves ``{status: s, created_at: range}`` from a
#: compound index whose fields are exactly those (``_try_compound_range_id_keys``) and reads only the
#: matching orders; without it, the window's every order (by_created) — 2,400 for a 2 % filter's page.
#: Their cost to the engine's writes (``python -m bench.listing_indexes``, 1,000 orders, load 1.5): an
#: update that changes status and stage 3.43 / 2.66 → 3.90 / 3.05 ms (two runs, +14 %), one that does
#: not (most: updated_at, the trail) unchanged, 2.92 / 3.31 → 2.93 / 2.60 ms
declare_indexes(
    ORDERS,
    IndexModel([("status", ASCENDING), ("created_at", DESCENDING)], name="by_status_created"),
    IndexModel([("current_stage", ASCENDING), ("created_at", DESCENDING)], name="by_stage_created"),
)

#: what the walk reads of an order: its keys only (a whole document costs SecantusDB ~2× to send)
KEYS = {"_id": 1, "created_at": 1}
#: the first window, and the bounds of how much each next one may grow
FIRST_WINDOW = timedelta(hours=1)
MIN_GROWTH, MAX_GROWTH = 2, 8
#: history walked in windows before the rest is one query (a rare filter: its own index is cheaper)
OPEN_AFTER = timedelta(days=3)


async def _page(orders: AsyncIOMotorCollection, keys: list[dict[str, Any]], fields: dict[str, Any],
                dense: bool) -> list[dict[str, Any]]:
    """The page's documents, in ``keys``' order, by ``_id``. ``dense`` (no filter but time: the page's
    time span holds only the page's orders): within that span, which SecantusDB then reads through
    by_created (~0.25 ms an order) instead of ``_id`` point lookups (~1 ms each: 50 ms of a first
    page); a filtered page's span may hold thousands of others (stage=design: 0.7 s that way)."""
    if not keys:
        return []
    ids = [k["_id"] for k in keys]
    q: dict[str, Any] = {"_id": {"$in": ids}}
    times = [t for k in keys if isinstance(t := k.get("created_at"), datetime)]
    if dense and len(times) == len(keys):
        q = {"created_at": {"$gte": min(times), "$lte": max(times)}, **q}
    docs = {d["_id"]: d async for d in orders.find(q, fields)}
    return [docs[i] for i in ids if i in docs]


def _window(lo: datetime | None, hi: datetime | None) -> dict[str, Any]:
    rng: dict[str, Any] = {}
    if lo is not None:
        rng["$gte"] = lo
    if hi is not None:
        rng["$lt"] = hi
    return rng


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _holds(value: Any, cond: Any) -> bool:
    """One clause of OrderFilter's shapes, as MongoDB matches it on a scalar field."""
    if isinstance(cond, dict) and set(cond) == {"$in"}:
        return isinstance(value, str) and value in cond["$in"]
    if isinstance(cond, dict):  # {"$lt": datetime}: a missing or null deadline is not before anything
        return isinstance(value, datetime) and _aware(value) < _aware(cond["$lt"])
    return isinstance(value, str) and value == cond


def _matchable(rest: dict[str, Any]) -> bool:
    """Only OrderFilter's clause shapes: a string, ``$in`` strings, ``$lt`` a time, on top-level fields."""
    for field, cond in rest.items():
        if "." in field or field.startswith("$"):
            return False
        if isinstance(cond, dict):
            ins = cond.get("$in")
            if not (set(cond) == {"$in"} and isinstance(ins, list) and all(isinstance(v, str) for v in ins)) \
                    and not (set(cond) == {"$lt"} and isinstance(cond["$lt"], datetime)):
                return False
        elif not isinstance(cond, str):
            return False
    return True


def _pivot(rest: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The clause a ``by_*_created`` index serves with the window: a stage, else a status (or statuses)."""
    for field in ("current_stage", "status"):
        value = rest.get(field)
        if isinstance(value, str):
            return field, [value]
        if isinstance(value, dict) and set(value) == {"$in"}:
            return field, list(value["$in"])
    return None


async def _window_ids(orders: AsyncIOMotorCollection, rng: dict[str, Any], rest: dict[str, Any],
                     limit: int) -> list[dict[str, Any]]:
    """The keys (``_id``, ``created_at``) of the newest ``limit`` orders of one window.

    With a stage or status *and* other clauses (status and stage; overdue's statuses and deadline)
    no index holds exactly those fields, and SecantusDB would read the window's every order: then
    the pivot's ``by_*_created`` index gives the candidates (only those are read) and the other
    clauses are matched here — OrderFilter's shapes only (a string, ``$in`` strings, ``$lt`` a time;
    the order fields are scalars). Measured at 100,000 orders: ``overdue`` 0.8–1.2 s → see docs/console.md.
    Not ``_id: {$in: candidates}`` for the rest: SecantusDB takes ~1 ms per id (336 ids: 314 ms)."""
    pivot = _pivot(rest)
    if pivot is None or (len(rest) == 1 and len(pivot[1]) == 1) or not _matchable(rest):
        cursor = orders.find({"created_at": rng, **rest}, KEYS).sort("created_at", DESCENDING).limit(limit)
        return [d async for d in cursor]
    field, values = pivot
    others = {k: v for k, v in rest.items() if k != field}
    narrow = {"_id": 1, "created_at": 1, **{k: 1 for k in others}}
    docs: list[dict[str, Any]] = []
    for value in values:
        cursor = orders.find({"created_at": rng, field: value}, narrow).sort("created_at", DESCENDING)
        docs.extend([d async for d in cursor if all(_holds(d.get(k), c) for k, c in others.items())])
    docs.sort(key=lambda d: _aware(d["created_at"]), reverse=True)  # stable: one value's order kept
    return docs[:limit]


async def newest_first(orders: AsyncIOMotorCollection, query: dict[str, Any], fields: dict[str, Any], *,
                       limit: int, skip: int = 0, now: datetime | None = None) -> list[dict[str, Any]]:
    """``find(query, fields).sort(created_at, -1).skip(skip).limit(limit)``, window by window: ids only
    while walking (an order's whole document costs SecantusDB ~2× its ``_id`` to send), then the page's
    documents by ``_id``."""
    want = skip + limit
    if limit <= 0:
        return []
    now = now or datetime.now(UTC)
    rest = {k: v for k, v in query.items() if k != "created_at"}
    bounds = query.get("created_at") or {}
    if not isinstance(bounds, dict) or set(bounds) - {"$gte", "$lt"}:  # not OrderFilter's range: plain query
        cursor = orders.find(query, fields).sort("created_at", DESCENDING).skip(skip).limit(limit)
        return [d async for d in cursor]
    floor: datetime | None = bounds.get("$gte")
    hi: datetime | None = bounds.get("$lt")
    span, walked = FIRST_WINDOW, timedelta(0)
    found: list[dict[str, Any]] = []
    while True:
        top = hi if hi is not None else now  # the first window is open above: orders stamped ahead of now
        lo: datetime | None = top - span
        if walked + span > OPEN_AFTER:
            lo = None
        if floor is not None and (lo is None or lo <= floor):
            lo = floor
        last = lo is None or lo == floor
        rng = _window(lo, hi)
        if lo is None:
            if not bounds and hi is not None:
                # the remainder of an unbounded listing: also the orders without a date (null sorts last)
                rng = {"$not": {"$gte": hi}}
            # the filter's clauses first, so an index of theirs serves the remainder if there is one
            q = {**rest, "created_at": rng} if rng else dict(rest)
            cursor = orders.find(q, KEYS).sort("created_at", DESCENDING).limit(want - len(found))
            found.extend([d async for d in cursor])
        else:
            found.extend(await _window_ids(orders, rng, rest, want - len(found)))
        if len(found) >= want or last:
            return await _page(orders, found[skip:], fields, dense=not rest)
        walked += span
        hi = lo
        # the next window: enough for what is missing at the rate seen so far, between ×2 and ×8
        rate = len(found) / walked.total_seconds()
        needed = timedelta(seconds=(want - len(found)) / rate * 1.25) if rate else span * MAX_GROWTH
        span = min(max(needed, span * MIN_GROWTH), span * MAX_GROWTH)
