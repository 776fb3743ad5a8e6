"""A report file's cursor broken by its connection mid-period is reopened where it stopped
(app/reports/files.py ``period_orders``): every order once, in the unbroken cursor's order.

The break is injected around pymongo's cursor (a network fault the real server cannot be told to
make on demand: in ``bench.daily_file --orders 1000000`` it was the client's monitor giving up on a
busy server, which cancels the operations in flight); the database and the query are real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import AutoReconnect

from app.reports.files import period_orders
from flows.documents import ORDERS
from tests.integration.test_jobs import db  # noqa: F401  # db: a fixture

pytestmark = pytest.mark.integration
T0 = datetime(2026, 4, 10, tzinfo=UTC)
QUERY = {"product": {"$in": ["p"]}, "created_at": {"$gte": T0, "$lt": T0 + timedelta(days=1)}}


class Breaking:
    """``db[ORDERS].find`` whose first ``breaks`` cursors raise AutoReconnect after ``after`` documents."""

    def __init__(self, real: AsyncIOMotorDatabase[Any], breaks: int, after: int) -> None:
        self.db, self.breaks, self.after, self.opened = real, breaks, after, 0

    def __getitem__(self, name: str) -> Any:
        assert name == ORDERS
        return self

    def find(self, *args: Any, **kw: Any) -> Any:
        self.opened += 1
        real = self.db[ORDERS].find(*args, **kw)
        broken = self.opened <= self.breaks
        after = self.after

        class Cursor:
            def sort(self, *a: Any) -> Cursor:
                real.sort(*a)
                return self

            def hint(self, *a: Any) -> Cursor:
                real.hint(*a)
                return self

            async def __aiter__(self) -> Any:
                n = 0
                async for doc in real:
                    if broken and n == after:
                        raise AutoReconnect("operation cancelled")
                    n += 1
                    yield doc

        return Cursor()


async def test_a_broken_cursor_is_reopened_and_gives_every_order_once_in_order(
        db: AsyncIOMotorDatabase[Any]) -> None:  # noqa: F811
    # 60 orders on 12 instants (ties: the resume point falls inside an instant), one of another product
    await db[ORDERS].insert_many([{"_id": f"O{n:03d}", "product": "p", "created_at": T0 + timedelta(seconds=n // 5)}
                                  for n in range(60)] + [{"_id": "X", "product": "q", "created_at": T0}])
    fields = {"created_at": 1}
    unbroken = [d["_id"] async for d in period_orders(db, QUERY, fields)]
    assert sorted(unbroken) == [f"O{n:03d}" for n in range(60)]

    flaky = Breaking(db, breaks=3, after=17)
    got = [d["_id"] async for d in period_orders(flaky, QUERY, fields, pause_s=0)]  # type: ignore[arg-type]
    assert got == unbroken and flaky.opened == 4

    hopeless = Breaking(db, breaks=10, after=5)
    with pytest.raises(AutoReconnect):
        async for _ in period_orders(hopeless, QUERY, fields, resumes=2, pause_s=0):  # type: ignore[arg-type]
            pass
    assert hopeless.opened == 3
