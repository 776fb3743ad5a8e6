"""``wake_at`` (flows/runtime/store.py): the one indexed field both sweeps find orders by — the earlier
of the next durable timer and the moment the outbox goes stale. A wrong value would leave a timer
unfired or a crashed relay's outbox unsent, so each case is pinned here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from motor.motor_asyncio import AsyncIOMotorClient

from flows.runtime.store import OrderStoreV2

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _store() -> OrderStoreV2:
    client = AsyncIOMotorClient("mongodb://127.0.0.1:9", connect=False)  # never contacted
    return OrderStoreV2(client["unused"], outbox_stale_s=10)


def test_wake_at_is_the_earlier_of_the_next_timer_and_the_outbox_going_stale() -> None:
    store = _store()
    assert store.wake_at({"next_timer_at": None, "outbox_at": None}) is None
    assert store.wake_at({}) is None
    assert store.wake_at({"next_timer_at": T0, "outbox_at": None}) == T0
    assert store.wake_at({"next_timer_at": None, "outbox_at": T0}) == T0 + timedelta(seconds=10)
    assert store.wake_at({"next_timer_at": T0 + timedelta(seconds=3), "outbox_at": T0}) == T0 + timedelta(seconds=3)
    assert store.wake_at({"next_timer_at": T0 + timedelta(hours=1), "outbox_at": T0}) == T0 + timedelta(seconds=10)
