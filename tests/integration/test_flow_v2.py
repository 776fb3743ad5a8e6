"""The v2 runtime end to end (issue 10 §4): real tansu + SecantusDB, a real ``hub run`` worker, the
partner simulators. A v2 blueprint (tests/fixtures/flows/runtime/line_change.yaml) runs through a
callback call, a manual stage with field rules and a synchronous close-report; the order document
holds the state, the outbox and the timeline."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from hub.settings import PROJECT_ROOT, Settings
from simulators import serve
from tests.conftest import free_port
from tests.integration.flow_harness import FlowEnv, Hub, Sim, fast_config
from tests.support import eventually

pytestmark = pytest.mark.integration
FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "flows" / "runtime" / "line_change.yaml"


@pytest.fixture
async def v2_env(settings: Settings, tmp_path: Path) -> AsyncIterator[FlowEnv]:
    sim_port = free_port()
    runner, state = await serve(PROJECT_ROOT / "config", "127.0.0.1", sim_port)
    config_dir = fast_config(tmp_path / "config")
    shutil.copy(FIXTURE, config_dir / "flows" / FIXTURE.name)
    env = {**os.environ, "HUB_CONFIG_DIR": str(config_dir), "HUB_TOPIC_PREFIX": settings.topic_prefix,
           "HUB_MONGO_DB": settings.mongo_db, "HUB_HTTP_PORT": str(free_port()),
           "HUB_SIM_URL": f"http://127.0.0.1:{sim_port}", "HUB_FLOW_RECOVERY_INTERVAL_S": "0.5",
           "HUB_LOG_LEVEL": "INFO", "HUB_WORKER_ID": f"w-{settings.topic_prefix}"}
    hub = Hub(settings=settings, env=env, log_dir=tmp_path)
    client = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    try:
        await hub.start()
        yield FlowEnv(hub=hub, sim=Sim(f"http://127.0.0.1:{sim_port}", state), db=client[settings.mongo_db],
                      settings=settings)
    finally:
        await asyncio.to_thread(hub.stop)
        await runner.cleanup()
        client.close()


async def test_a_v2_order_runs_callback_manual_stage_and_close_report(v2_env: FlowEnv) -> None:
    env = v2_env
    order_id = await env.post_order("esop", "ESOP-V2-1", "internet_line", scenario="change")
    doc = await env.wait_order(order_id, lambda d: d.get("current_stage") == "approve")
    assert doc["engine"] == 2 and doc["blueprint"] == "test-line-change" and doc["status"] == "waiting"
    assert doc["outbox"] == [] and doc["open_calls"] == {}  # the design call went out and its callback came back
    assert doc["state"]["data"]["design"]["design_id"].startswith("D-")  # the callback's result, saved
    assert [s["stage"] for s in doc["stages"]] == ["accept", "design", "approve"]

    # field rules are checked at the API: the submitter gets every error now, nothing is emitted
    status, body = await env.submit(order_id, "approve", {"approved": "yes"})
    assert status == 400, body
    assert {e["field"] for e in body["errors"]} == {"data.approved", "data.designer"}
    status, body = await env.submit(order_id, "design", {})
    assert status == 409, body  # a call node is not submitted by hand

    status, body = await env.submit(order_id, "approve", {"approved": True, "designer": "李工"})
    assert status == 202, body
    doc = await env.wait_order(order_id, lambda d: d["status"] == "completed")
    assert [s["stage"] for s in doc["stages"]] == ["accept", "design", "approve", "close_report", "done"]
    assert all(s["finished_at"] is not None for s in doc["stages"][:-1])
    assert doc["completed_at"] is not None and doc["outbox"] == []
    received = env.sim.calls("esop", "notifyOrderResult")
    assert len(received) == 1 and received[0].body["orderId"] == "ESOP-V2-1"

    async def flat_calls() -> bool:
        ops = {c["operation"] async for c in env.db.calls.find({"order_id": order_id, "outcome": "ok"})}
        return ops == {"design_request", "close_report"}

    try:
        await eventually(flat_calls, timeout=5)
    except AssertionError:
        raise AssertionError([c async for c in env.db.calls.find({"order_id": order_id})]) from None
