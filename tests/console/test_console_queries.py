"""The orders listing against the real database: ``Queries.orders`` walks ``created_at`` windows
(app/admin/listing.py) and must answer exactly what the plain query answers — ``find(filter)
.sort(created_at, -1).skip(skip).limit(limit)`` — page by page and filtered (the console's page, the
API's ``/admin/v1/orders`` and ``hub orders list`` are all this listing)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import DESCENDING

from app.admin.queries import OrderFilter, Queries
from hub.db import ensure_indexes
from hub.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(infra_settings: Settings) -> AsyncIterator[AsyncIOMotorDatabase[Any]]:
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(infra_settings.mongo_uri, tz_aware=True)
    name = f"t_console_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        client.close()


async def plain(db: AsyncIOMotorDatabase[Any], flt: OrderFilter, limit: int, skip: int) -> list[str]:
    cursor = db.orders.find(flt.query(), {"_id": 1}).sort("created_at", DESCENDING).skip(skip).limit(limit)
    return [d["_id"] async for d in cursor]


async def test_windowed_listing_pages_are_the_plain_querys_pages(db: AsyncIOMotorDatabase[Any]) -> None:
    now = datetime.now(UTC)
    # 160 orders: 2 stamped ahead of now (a clock ahead), 20 in the last hour, the rest spread over
    # 60 days (past the 3 days walked in windows), 2 without a date; every 7th waiting, every 23rd at "design",
    # every 3rd past its SLA deadline
    spread = ([-timedelta(minutes=5), -timedelta(seconds=1)] + [timedelta(minutes=3 * i + 1) for i in range(20)]
              + [timedelta(hours=10 * i + 1) for i in range(138)])
    await db.orders.insert_many([
        {"_id": f"o-{i:03d}", "status": "waiting" if i % 7 == 0 else "completed", "product": "internet_line",
         "partner": "esop" if i % 2 else "group", "current_stage": "design" if i % 23 == 0 else None,
         "sla_deadline": now - timedelta(hours=1) if i % 3 == 0 else None,
         "created_at": now - age, "order": {"customer": {"name": "x"}}} for i, age in enumerate(spread)]
        + [{"_id": "o-undated", "status": "waiting"}, {"_id": "o-null", "status": "completed", "created_at": None}])
    await ensure_indexes(db)  # as the hub creates them at start: which index serves a window matters
    queries = Queries(db, {})
    filters = (OrderFilter(), OrderFilter(status="waiting"), OrderFilter(since=now - timedelta(days=2)),
               OrderFilter(until=now - timedelta(days=1)), OrderFilter(stage="design"),
               OrderFilter(status="waiting", partner="esop", since=now - timedelta(days=20)),
               OrderFilter(since=now - timedelta(days=30), until=now - timedelta(days=5)),
               OrderFilter(status="failed"), OrderFilter(until=now - timedelta(days=365)), OrderFilter(overdue=True),
               OrderFilter(status="waiting", stage="design"), OrderFilter(stage="design", partner="group"))
    for flt in filters:
        for limit, skip in ((51, 0), (51, 51), (51, 120), (1, 0), (200, 0), (10, 155), (5, 159)):
            got = [o["id"] for o in await queries.orders(flt, limit=limit, skip=skip)]
            assert got == await plain(db, flt, limit, skip), (flt, limit, skip)
    page = await queries.orders(OrderFilter(), limit=3)
    assert [o["id"] for o in page] == ["o-000", "o-001", "o-002"] and "order" not in page[0]
