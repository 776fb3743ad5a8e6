"""The engine's order-document cache holds a bounded amount of memory, however many orders are open.

A file of many orders left ``hub run`` ~150 MB bigger for good: every open order (waiting for a
manual stage) stayed in a 20,000-document cache. Documents here are the engine's own new orders.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from flows.graph import step
from flows.graph.check import partner_operations
from flows.graph.library import load_library
from flows.runtime.document import apply_commands, new_document, project
from flows.runtime.store import OrderStoreV2
from hub.envelope import Envelope
from hub.partners import load_partners
from hub.settings import load_settings

CACHE_BUDGET_MB = 25


def _order(n: int) -> Envelope:
    return Envelope(
        type="order.received", source="boss", protocol="sftp", correlation_id=f"ord-{n:08d}",
        idempotency_key=f"order:boss:B{n}:open", product="internet_line", scenario="open",
        payload={"external_order_id": f"B{n:011d}", "product": "internet_line", "scenario": "open",
                 "customer": {"name": f"杭州某某科技有限公司{n % 997}", "contact_phone": "13800000000"},
                 "addresses": [{"role": "install", "province": "浙江", "city": "杭州", "detail": f"西湖区文三路{n}号"}],
                 "bandwidth_mbps": 100, "extensions": {}},
    )


@pytest.mark.allow_blocking(reason="measures the cache's memory under tracemalloc: 5,000 documents built in one "
                             "loop callback on purpose, nothing else runs on this loop")
async def test_open_orders_cached_stay_within_a_memory_budget() -> None:
    config = load_settings().config_dir
    bp = load_library(config, partner_operations(load_partners(config))).get("internet_line", "open")
    assert bp is not None
    env = _order(0)
    template = new_document(env.correlation_id, {"partner": "boss", "order": env.payload}, bp, 1.7e9)
    template["state"], commands = step(bp, None, {"type": "order_received", "order_id": env.correlation_id,
                                                   "data": env.payload}, 1.7e9)
    apply_commands(template, commands, 1.7e9, template["state"]["seq"])
    project(template, bp, 1.7e9)
    blob = json.dumps(template, default=str)  # json round trip: a fresh document per order, fast
    client = AsyncIOMotorClient("mongodb://127.0.0.1:9", connect=False)  # never contacted
    store = OrderStoreV2(client["unused"])
    tracemalloc.start()
    try:
        for n in range(5_000):  # a file of 5,000 orders, all still open
            doc = json.loads(blob)
            doc["_id"] = f"ord-{n:08d}"
            store._remember(doc)  # what load/create/save do with an open order
        del doc
        held_mb = tracemalloc.get_traced_memory()[0] / 1e6
    finally:
        tracemalloc.stop()
        client.close()
    assert held_mb < CACHE_BUDGET_MB, f"order cache holds {held_mb:.0f} MB for {len(store._cache)} open orders"
    assert f"ord-{4_999:08d}" in store._cache  # still a cache: the most recent orders are served from it
