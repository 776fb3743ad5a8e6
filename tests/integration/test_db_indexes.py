"""Retired indexes are dropped (hub/db.py ``retire_indexes``): every index costs every write of its
collection on SecantusDB, so one nothing queries any more must not stay behind in an existing
database after the upgrade that stopped declaring it."""

from __future__ import annotations

import uuid

import pytest
from pymongo import ASCENDING, DESCENDING, IndexModel

from flows.documents import CALLS, ORDERS
from hub.db import connect, ensure_indexes
from hub.settings import Settings

pytestmark = pytest.mark.integration


async def test_ensure_indexes_drops_the_retired_ones_and_keeps_the_declared(settings: Settings) -> None:
    client = connect(settings)
    db = client[f"idx_{uuid.uuid4().hex[:8]}"]
    try:
        await db[CALLS].create_indexes([IndexModel([("outcome", ASCENDING), ("started_at", DESCENDING)],
                                                   name="by_outcome_time")])
        await db[ORDERS].create_indexes([IndexModel([("status", ASCENDING), ("sla_deadline", ASCENDING)],
                                                    name="by_overdue")])
        await ensure_indexes(db)
        await ensure_indexes(db)  # idempotent: nothing left to drop the second time
        calls = {i["name"] async for i in db[CALLS].list_indexes()}
        orders = {i["name"] async for i in db[ORDERS].list_indexes()}
        assert "by_outcome_time" not in calls and "by_order" in calls
        assert "by_overdue" not in orders and {"by_external", "by_created"} <= orders
    finally:
        await client.drop_database(db.name)
        client.close()
