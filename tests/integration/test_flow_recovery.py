"""MongoDB is the source of truth: a worker killed with SIGKILL mid-flow (or restarted against an
empty broker) finishes every order exactly once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.integration.flow_harness import FlowEnv, flow_env  # noqa: F401  (fixture)
from tests.support import eventually

pytestmark = pytest.mark.integration
N = 8


@pytest.mark.parametrize("wipe_broker", [False, True], ids=["same-broker", "wiped-broker"])
async def test_worker_killed_mid_flow_finishes_every_order_once(flow_env: FlowEnv,  # noqa: F811
                                                                wipe_broker: bool) -> None:
    env = flow_env
    # the construction platform answers after 4 s: at the kill, every order has a call in flight
    await env.sim.mode("construction", "slow", delay_s=4)
    ids = [await env.post_order("esop", f"ESOP-KILL-{i}", "internet_line") for i in range(N)]

    async def all_in_construction() -> bool:
        n = await env.db.orders.count_documents({"_id": {"$in": ids}, "current_stage": "construction",
                                                 "calls.operation": "construction_order"})
        return n == N

    await eventually(all_in_construction, timeout=30)
    await asyncio.to_thread(env.hub.kill)  # SIGKILL: nothing flushed, nothing committed
    await env.sim.mode("construction", "ok")
    if wipe_broker:  # same MongoDB, brand-new empty topics: everything pending must come from the documents
        env.hub.env["HUB_TOPIC_PREFIX"] = f"w{uuid.uuid4().hex[:8]}"
    await env.hub.start()

    async def all_completed() -> bool:
        return await env.db.orders.count_documents({"_id": {"$in": ids}, "status": "completed"}) == N

    try:
        await eventually(all_completed, timeout=90, interval=0.5)
    except AssertionError:
        stuck = [(d["_id"], d["current_stage"], d.get("blocked_reason"), d.get("waiting_for"))
                 async for d in env.db.orders.find({"_id": {"$in": ids}, "status": {"$ne": "completed"}})]
        raise AssertionError(f"not completed: {stuck}\n{env.hub.log_tail()}") from None

    assert {c.body["orderId"] for c in env.sim.calls("construction")} == set(ids)
    closes = [c.body["hubOrderId"] for c in env.sim.calls("esop", "notifyOrderResult")]
    assert sorted(closes) == sorted(ids)  # one close-report per order, none twice
    async for doc in env.db.orders.find({"_id": {"$in": ids}}):
        assert [s["stage"] for s in doc["stages"]] == ["accept", "design", "construction", "resource_entry",
                                                       "resource_config", "activation", "close_out"]
        assert len(doc["calls"]) == 7 and all(c["outcome"] == "ok" for c in doc["calls"])
