"""An order accepted by intake must survive a broker that loses its topics before the engine
consumed it: the intake record keeps the envelope and the worker re-sends it at start."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.runtime import Runtime
from app.web import build_web_app
from tests.integration.flow_harness import FlowEnv, flow_env  # noqa: F401  (fixture)
from tests.integration.line_orders import LINE_STAGES, all_completed, stuck
from tests.integration.test_intake import ESOP_KEY, URL, order
from tests.support import eventually

pytestmark = pytest.mark.integration


async def test_accepted_orders_survive_a_wiped_broker_before_the_engine_saw_them(
    flow_env: FlowEnv, aiohttp_client: Any  # noqa: F811
) -> None:
    env = flow_env
    await asyncio.to_thread(env.hub.stop)  # no worker: accepted orders only live on the broker
    intake_settings = env.settings.model_copy(update={"config_dir": Path(env.hub.env["HUB_CONFIG_DIR"])})
    client = await aiohttp_client(build_web_app(Runtime(intake_settings)))
    ids = []
    for i in range(3):
        resp = await client.post(URL, json=order(f"E-WIPE-{i}", fusion=None, access_type="PON"), headers=ESOP_KEY)
        assert resp.status == 202, await resp.text()
        ids.append((await resp.json())["order_id"])
    assert await env.db.orders.count_documents({"_id": {"$in": ids}}) == 0

    env.hub.env["HUB_TOPIC_PREFIX"] = f"w{uuid.uuid4().hex[:8]}"  # same MongoDB, brand-new empty topics
    await env.hub.start()

    try:
        await eventually(lambda: all_completed(env, ids), timeout=90, interval=0.5)
    except AssertionError:
        raise AssertionError(f"{await stuck(env, ids)}\n{env.hub.log_tail()}") from None
    closes = [c.body["hubOrderId"] for c in env.sim.calls("esop", "notifyOrderResult")]
    assert sorted(closes) == sorted(ids)  # each recovered order closed exactly once
    async for doc in env.db.orders.find({"_id": {"$in": ids}}):
        assert [s["stage"] for s in doc["stages"]] == LINE_STAGES  # the whole flow, from its start
