"""The real-time report sweep runs every 2 s over the orders collection: its filter must start with
a clause a declared index leads with and that bounds it by time, or the embedded server reads every
order ever written on every sweep (a 200 MB ingest fell from ~330 to ~11 records/s)."""

from __future__ import annotations

from datetime import UTC, datetime

import flows.documents  # noqa: F401  (declares the orders indexes)
from app.reports.realtime import changed_since
from hub.db import INDEXES, RETIRED


def _leading_fields(collection: str) -> set[str]:
    return {next(iter(ix.document["key"])) for ix in INDEXES[collection]}


def test_the_sweep_filter_is_led_by_an_indexed_time_range() -> None:
    mark = datetime(2026, 12, 2, tzinfo=UTC)
    q = changed_since(mark, ["srv6_vpn"])
    first = next(iter(q))
    assert first == "updated_at" and q[first] == {"$gte": mark}
    assert first in _leading_fields("orders")


def test_the_status_led_index_it_replaced_is_dropped() -> None:
    names = {ix.document["name"] for ix in INDEXES["orders"]}
    assert "by_updated" in names and "by_status_product" not in names
    assert "by_status_product" in RETIRED["orders"]
