"""A full listing page is masked off the event loop: masking walks every value of every document
(classification by field name, issue 17 §3), ~0.7 ms for a 7 KB order, so ``limit=1000`` would hold
the loop for most of a second — every intake, callback and readiness probe of the worker with it.
The autouse loop check fails a test whose loop ran one callback over 100 ms."""

from __future__ import annotations

from typing import Any

import pytest

from app.admin.queries import CallFilter, DeadLetterFilter, OrderFilter, Queries
from app.runtime import Runtime
from bench.masking import order_doc

pytestmark = pytest.mark.integration
N = 600


async def test_a_thousand_row_listing_never_blocks_the_loop(runtime: Runtime) -> None:
    db: Any = runtime.db
    docs = [{"_id": f"ord-loop-{n}", **order_doc(n), "created_at": None} for n in range(N)]
    await db.orders.insert_many(docs, ordered=False)
    queries = Queries(db, runtime.partners)
    rows = await queries.orders(OrderFilter(), limit=1000)
    assert len(rows) == N
    assert all(r["state"]["stage0"]["result"]["phone"] == "1********0" for r in rows)  # masked, all of them
    assert await queries.calls(CallFilter(), limit=1000) == []
    assert await queries.dead_letters(DeadLetterFilter(), limit=1000) == []
