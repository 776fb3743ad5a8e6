"""The sweeps' candidates (flows/runtime/store.py ``due``) on the real database, with what a long-running
hub holds: most orders finished, their ``wake_at`` null. The query carries a lower bound so the
embedded server does not walk every finished order's null entry (a cost measured in bench/fusion.py,
not here); these tests pin that the bound leaves out nothing that is due and takes nothing that is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorDatabase

from flows.runtime.store import OrderStoreV2
from tests.integration.test_jobs import db  # noqa: F401  # db: a fixture

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def order(oid: str, *, timer: datetime | None = None, outbox: datetime | None = None) -> dict[str, Any]:
    return {"_id": oid, "status": "completed" if timer is None and outbox is None else "waiting",
            "next_timer_at": timer, "outbox_at": outbox}


async def test_due_finds_the_due_timers_and_stale_outboxes_among_many_finished_orders(
        db: AsyncIOMotorDatabase[Any]) -> None:  # noqa: F811
    store = OrderStoreV2(db, outbox_stale_s=10)
    docs = [order(f"done-{n}") for n in range(300)]
    docs += [order("timer-due", timer=NOW - timedelta(seconds=1)), order("timer-now", timer=NOW),
             order("timer-later", timer=NOW + timedelta(minutes=5)),
             order("timer-long-ago", timer=datetime(1999, 1, 1, tzinfo=UTC)),
             order("outbox-stale", outbox=NOW - timedelta(seconds=30)),
             order("outbox-fresh", outbox=NOW - timedelta(seconds=2))]
    for doc in docs:
        doc["wake_at"] = store.wake_at(doc)
    await db["orders"].insert_many(docs)

    assert sorted(await store.due("next_timer_at", NOW)) == ["timer-due", "timer-long-ago", "timer-now"]
    # the outbox sweep asks for outboxes written before now - the stale age (flows/runtime/sweeps.py)
    assert await store.due("outbox_at", NOW - timedelta(seconds=10)) == ["outbox-stale"]
    assert await store.due("next_timer_at", NOW, limit=1) == ["timer-long-ago"]  # the oldest first
