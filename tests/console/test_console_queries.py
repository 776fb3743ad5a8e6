"""The console's orders page against the real database: ``newest_first`` answers exactly what the
service layer's listing answers (the CLI's and the API's), page by page and filtered."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from app.admin.queries import OrderFilter, Queries
from app.console.pages import newest_first
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


async def test_newest_first_pages_are_the_listings_pages(db: AsyncIOMotorDatabase[Any]) -> None:
    now = datetime.now(UTC)
    # 140 orders: 20 in the last hour, the rest spread over 40 days; every 7th waiting
    spread = [timedelta(minutes=3 * i) if i < 20 else timedelta(hours=7 * i) for i in range(140)]
    await db.orders.insert_many([
        {"_id": f"o-{i:03d}", "status": "waiting" if i % 7 == 0 else "completed", "product": "internet_line",
         "created_at": now - age} for i, age in enumerate(spread)])
    queries = Queries(db, {})
    for flt in (OrderFilter(), OrderFilter(status="waiting"), OrderFilter(since=now - timedelta(days=2)),
                OrderFilter(until=now - timedelta(days=1))):
        for skip in (0, 51, 120):
            expected = [o["id"] for o in await queries.orders(flt, limit=51, skip=skip)]
            got = [o["id"] for o in await newest_first(queries, flt, limit=51, skip=skip, now=now)]
            assert got == expected, (flt, skip)
    assert len(await newest_first(queries, OrderFilter(), limit=51, now=now)) == 51
