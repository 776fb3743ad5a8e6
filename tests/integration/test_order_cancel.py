"""Cancel / withdraw (issue 10 §5) against the real broker and database: every way of asking — the
operator HTTP endpoint, the admin API, ``hub orders cancel``, a partner's withdraw over SOAP, REST and
a file — produces the same ``order.cancel`` envelope of the *running* order on ``{p}.orders``.

Most tests stop at the envelope on the orders topic and the answers; the last one runs a real ``hub
run`` worker (the v2 runtime, flows/runtime) and sees the cancelled order and its compensation at the
simulator. What the engine does step by step is tests/unit/flows_graph_cancel_test.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pymongo import MongoClient
from typer.testing import CliRunner

from app.cli import app as cli
from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub import topics
from hub.deadletter import ACTIONS, DeadLetters
from hub.envelope import Envelope
from hub.order import order_id_for
from hub.settings import AdminToken, Settings
from routes.loader import load_route_file
from routes.pipeline import RouteEmit
from tests.integration.flow_harness import OPERATOR as HARNESS_OPERATOR
from tests.integration.flow_harness import FlowEnv, running_flow_env
from tests.integration.test_intake import ESOP_KEY, URL, order
from tests.support import eventually, read_topic, topic_envelopes

pytestmark = pytest.mark.integration
VIEWER = {"Authorization": "Bearer viewer-token-for-tests-0001"}
OPERATOR = {"Authorization": "Bearer operator-token-for-tests-01"}


def with_tokens(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_tokens": [
        AdminToken(name="vera", role="viewer", token=SecretStr(VIEWER["Authorization"][7:])),
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR["Authorization"][7:])),
    ]})


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(build_web_app(Runtime(with_tokens(settings))))


def order_doc(ext: str, *, status: str = "in_flight", partner: str = "esop") -> dict[str, Any]:
    """An order document as the engine keeps it (the fields a cancel reads), running unless told."""
    oid = order_id_for(partner, ext, "open")
    now = datetime.now(UTC)
    return {"_id": oid, "order_id": oid, "partner": partner, "external_order_id": ext, "product": "internet_line",
            "scenario": "open", "status": status, "current_stage": "network_change", "created_at": now,
            "updated_at": now, "order": {"external_order_id": ext, "product": "internet_line", "scenario": "open"}}


async def seed(runtime: Runtime, ext: str, *, status: str = "in_flight", partner: str = "esop") -> str:
    assert runtime.db is not None
    doc = order_doc(ext, status=status, partner=partner)
    await runtime.db["orders"].insert_one(doc)
    return str(doc["_id"])


async def orders_topic(settings: Settings, expect: int | None = None, wait: float = 5.0) -> list[Envelope]:
    return await topic_envelopes(settings, topics.orders(settings.topic_prefix), expect=expect, wait=wait)


def assert_cancel(env: Envelope, oid: str, *, reason: str, by: str) -> None:
    assert (env.type, env.correlation_id, env.idempotency_key) == ("order.cancel", oid, f"cancel:{oid}")
    assert env.payload == {"reason": reason, "by": by}
    assert env.kafka_key() == oid.encode()


# ---- operator: POST /api/v1/orders/{id}/cancel ----------------------------------------------------
async def test_operator_cancel_produces_one_order_cancel_and_is_recorded(client: TestClient,
                                                                         settings: Settings) -> None:
    runtime: Runtime = client.app[RUNTIME]
    oid = await seed(runtime, "C-1")
    resp = await client.post(f"/api/v1/orders/{oid}/cancel", json={"reason": "customer withdrew"}, headers=OPERATOR)
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert answer["order_id"] == oid and answer["duplicate"] is False
    (env,) = await orders_topic(settings, expect=1)
    assert_cancel(env, oid, reason="customer withdrew", by="operator:otto")
    assert env.id == answer["envelope_id"]
    # asked again: accepted as the same effect (same key); the engine ignores a second cancel anyway
    again = await client.post(f"/api/v1/orders/{oid}/cancel", json={"reason": "again", "by": "li"}, headers=OPERATOR)
    assert again.status == 202 and (await again.json())["duplicate"] is True
    assert runtime.db is not None
    actions = [a async for a in runtime.db[ACTIONS].find({"order_id": oid}).sort("at", 1)]
    assert [(a["action"], a["who"], a["result"], a["reason"]) for a in actions] == [
        ("cancel", "operator:otto", "ok", "customer withdrew"), ("cancel", "operator:otto", "ok", "again")]


async def test_operator_cancel_refusals_are_problem_documents(client: TestClient, settings: Settings) -> None:
    runtime: Runtime = client.app[RUNTIME]
    done = await seed(runtime, "C-2", status="completed")
    unknown = await client.post("/api/v1/orders/ord-nope/cancel", json={"reason": "x"}, headers=OPERATOR)
    assert unknown.status == 404 and unknown.content_type == "application/problem+json"
    assert "ord-nope" in (await unknown.json())["detail"]
    finished = await client.post(f"/api/v1/orders/{done}/cancel", json={"reason": "x"}, headers=OPERATOR)
    assert finished.status == 409 and "already completed" in (await finished.json())["detail"]
    assert (await client.post(f"/api/v1/orders/{done}/cancel", json={"reason": "x"}, headers=VIEWER)).status == 403
    assert (await client.post(f"/api/v1/orders/{done}/cancel", json={"reason": "x"})).status == 401
    no_reason = await client.post(f"/api/v1/orders/{done}/cancel", json={}, headers=OPERATOR)
    assert no_reason.status == 400 and (await no_reason.json())["errors"][0]["field"] == "reason"
    assert await orders_topic(settings, wait=1.0) == []


# ---- admin API ------------------------------------------------------------------------------------
async def test_admin_api_cancel_is_the_same_envelope_and_audited_as_api(client: TestClient,
                                                                       settings: Settings) -> None:
    runtime: Runtime = client.app[RUNTIME]
    oid = await seed(runtime, "C-3", status="waiting")
    done = await seed(runtime, "C-4", status="cancelled")
    resp = await client.post(f"/admin/v1/orders/{oid}/cancel", json={"reason": "terminate"}, headers=OPERATOR)
    assert resp.status == 202, await resp.text()
    (env,) = await orders_topic(settings, expect=1)
    assert_cancel(env, oid, reason="terminate", by="api:otto")
    assert (await client.post(f"/admin/v1/orders/{oid}/cancel", json={"reason": "x"}, headers=VIEWER)).status == 403
    assert (await client.post("/admin/v1/orders/ord-nope/cancel", json={"reason": "x"},
                              headers=OPERATOR)).status == 404
    refused = await client.post(f"/admin/v1/orders/{done}/cancel", json={"reason": "x"}, headers=OPERATOR)
    assert refused.status == 409 and "already cancelled" in (await refused.json())["detail"]
    history = await client.get("/admin/v1/dlq/history", headers=VIEWER)
    rows = [(h["action"], h["who"], h["result"], h["order_id"]) for h in await history.json()]
    assert ("cancel", "api:otto", "ok", oid) in rows and ("cancel", "api:otto", "refused", done) in rows


# ---- hub orders cancel ----------------------------------------------------------------------------
def test_cli_cancel_produces_the_same_envelope(settings: Settings) -> None:
    env = {"HUB_TOPIC_PREFIX": settings.topic_prefix, "HUB_MONGO_DB": settings.mongo_db, "COLUMNS": "250"}

    running, finished = order_doc("C-5"), order_doc("C-6", status="failed")
    mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongo_uri)  # the CLI runs its own loop: no loop here
    with mongo:
        mongo[settings.mongo_db]["orders"].insert_many([running, finished])
    oid, failed = running["_id"], finished["_id"]
    result = CliRunner().invoke(cli, ["orders", "cancel", oid, "--reason", "撤单", "--as", "ops-li", "--json"], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.output)["order_id"] == oid
    (out,) = asyncio.run(orders_topic(settings, expect=1))
    assert_cancel(out, oid, reason="撤单", by="ops-li")
    refused = CliRunner().invoke(cli, ["orders", "cancel", failed, "--reason", "x"], env=env)
    assert refused.exit_code == 1 and "already failed" in refused.output
    assert CliRunner().invoke(cli, ["orders", "cancel", "ord-nope", "--reason", "x"], env=env).exit_code == 1


# ---- a partner's withdraw: REST and a file --------------------------------------------------------
async def test_rest_withdraw_cancels_the_running_order_instead_of_creating_one(client: TestClient,
                                                                             settings: Settings) -> None:
    runtime: Runtime = client.app[RUNTIME]
    body = order("W-1", scenario="withdraw", extensions={"withdraw_reason": "customer cancelled"})
    resp = await client.post(URL, json=body, headers=ESOP_KEY)
    assert resp.status == 400, await resp.text()  # nothing runs with that external id
    problem = await resp.json()
    assert "'W-1'" in problem["detail"] and problem["errors"][0]["type"] == "no_running_order"

    oid = await seed(runtime, "W-1")
    resp = await client.post(URL, json=body, headers=ESOP_KEY)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["order_id"] == oid  # the answer names the order withdrawn
    (env,) = await orders_topic(settings, expect=1)
    assert_cancel(env, oid, reason="customer cancelled", by="esop")
    assert (env.source, env.protocol) == ("esop", "rest")
    # no separate "withdraw" order on the partner's inbound topic
    assert await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0) == []


@pytest.mark.allow_blocking(reason="the test loads the BOSS route and builds its sample rows on its own loop")
async def test_withdraw_rows_in_a_file_become_cancels_and_an_unknown_one_a_dead_letter(settings: Settings) -> None:
    """The batch path (SFTP): rows are prepared on a thread, published in batches; a withdraw row is
    resolved and published on its own, one with no running order is dead-lettered, the rest goes on."""
    route = load_route_file(settings.config_dir / "routes" / "boss-sftp-orders.yaml").route
    runtime = Runtime(settings)
    await runtime.start()
    try:
        assert runtime.db is not None
        emit = RouteEmit(route, prefix=settings.topic_prefix, intake=runtime.intake, producer=runtime.producer,
                         dead_letters=DeadLetters(runtime.db, runtime.producer), db=runtime.db)
        oid = await seed(runtime, "B-1", partner="boss")
        withdraw = emit.prepare(Envelope(
            type="order.received", source="boss", protocol="sftp", correlation_id="raw", idempotency_key="raw:1",
            payload={"external_order_id": "B-1", "product": "internet_line", "scenario": "withdraw",
                     "customer": {"name": "某公司"}}, headers={"hub-canonical": "true"}))
        stray = withdraw.model_copy(update={"headers": {**withdraw.headers, "hub-withdraw-of": "B-404"},
                                            "idempotency_key": "withdraw:boss:B-404"})
        assert withdraw.type == "order.cancel" and withdraw.headers["hub-withdraw-of"] == "B-1"
        assert await emit.publish_batch([withdraw, stray]) == 0  # no orders left in the batch
        (env,) = await orders_topic(settings, expect=1)
        assert_cancel(env, oid, reason="withdraw", by="boss")
        letter = await runtime.db["dead_letters"].find_one({"envelope.idempotency_key": "withdraw:boss:B-404"})
        assert letter is not None and "'B-404'" in letter["error"]
    finally:
        await runtime.stop()


# ---- end to end: the v2 worker applies the cancel -------------------------------------------------
WITHDRAW_BLUEPRINT = """\
name: test-withdraw
product: internet_line
scenario: move
source: inferred
source_note: test fixture of cancel with compensation (tests/integration/test_order_cancel.py)
start: accept
nodes:
  accept: {kind: auto, title: 受理, set: {team: "'hz-install-1'"}, next: network_change}
  network_change:
    kind: call
    title: 组织现网变更
    steps:
      - {partner: resource, operation: config_plan, payload: {orderId: order_id, action: "'apply'"}}
    compensate: {partner: resource, operation: config_plan, payload: {orderId: order_id, action: "'undo'"}}
    next: verification
  verification:
    kind: user
    title: 业务验证
    fields: [{name: test_ok, type: bool, required: true}]
    next: done
  done: {kind: end, status: completed, reply: {order_id: order_id}}
"""


@pytest.fixture
async def worker(settings: Settings, tmp_path: Path) -> AsyncIterator[FlowEnv]:
    """A real ``hub run`` on a config with the blueprint above, the partner simulators in-process."""

    def add(flows: Path) -> None:
        (flows / "test_withdraw.yaml").write_text(WITHDRAW_BLUEPRINT, encoding="utf-8")

    async with running_flow_env(settings, tmp_path, add) as env:
        yield env


async def post(env: FlowEnv, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}{path}", json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_withdraw_and_operator_cancel_end_a_running_v2_order_cancelled_with_its_undo(worker: FlowEnv) -> None:
    env = worker
    withdrawn = await env.post_order("esop", "ESOP-WD-1", "internet_line", scenario="move")
    stopped = await env.post_order("esop", "ESOP-WD-2", "internet_line", scenario="move")
    for oid in (withdrawn, stopped):
        await env.wait_order(oid, lambda d: d.get("current_stage") == "verification")

    status, body = await post(env, URL, order("ESOP-WD-1", scenario="withdraw",
                                              extensions={"withdraw_reason": "客户撤单"}), ESOP_KEY)
    assert status == 202 and body["order_id"] == withdrawn, body
    status, body = await post(env, f"/api/v1/orders/{stopped}/cancel", {"reason": "terminate"}, HARNESS_OPERATOR)
    assert status == 202, body

    for oid, reason in ((withdrawn, "客户撤单"), (stopped, "terminate")):
        doc = await env.wait_order(oid, lambda d: d["status"] == "cancelled")
        assert doc["replies"][-1]["payload"]["reason"] == reason and doc["replies"][-1]["to"] == "origin"
    # each order's network change was applied once and undone once (the compensation, via delivery)
    async def undone() -> bool:
        bodies = [json.dumps(c.body, ensure_ascii=False) for c in env.sim.calls("resource", "config_plan")]
        return sum("undo" in b for b in bodies) == 2 and sum("apply" in b for b in bodies) == 2

    await eventually(undone, timeout=15)
    # too late now: nothing runs with that external id any more, and the order stays cancelled
    status, body = await post(env, URL, order("ESOP-WD-1", scenario="withdraw"), ESOP_KEY)
    assert status == 400 and "ESOP-WD-1" in body["detail"], body
    status, _ = await post(env, f"/api/v1/orders/{stopped}/cancel", {"reason": "again"}, HARNESS_OPERATOR)
    assert status == 409


async def test_operator_suspend_holds_a_v2_order_and_resume_applies_what_arrived(worker: FlowEnv) -> None:
    """D.1.8: a suspended order keeps what arrives (here the manual submission) and sends nothing;
    resume applies it and the order completes."""
    env = worker
    oid = await env.post_order("esop", "ESOP-HOLD-1", "internet_line", scenario="move")
    await env.wait_order(oid, lambda d: d.get("current_stage") == "verification")
    status, body = await post(env, f"/api/v1/orders/{oid}/resume", {}, HARNESS_OPERATOR)
    assert status == 409 and "not suspended" in body["detail"], body
    status, body = await post(env, f"/api/v1/orders/{oid}/suspend", {"reason": "客户要求暂缓"}, HARNESS_OPERATOR)
    assert status == 202, body
    await env.wait_order(oid, lambda d: (d.get("state") or {}).get("suspended"))
    status, body = await post(env, f"/api/v1/orders/{oid}/suspend", {"reason": "again"}, HARNESS_OPERATOR)
    assert status == 409 and "already suspended" in body["detail"], body

    status, body = await env.submit(oid, "verification", {"test_ok": True})
    assert status == 202, body
    doc = await env.wait_order(oid, lambda d: len(d["state"].get("suspended", {}).get("events", ())) == 1)
    assert doc["current_stage"] == "verification" and doc["status"] != "completed"  # kept, not applied

    status, body = await post(env, f"/api/v1/orders/{oid}/resume", {"reason": "继续"}, HARNESS_OPERATOR)
    assert status == 202, body
    doc = await env.wait_order(oid, lambda d: d["status"] == "completed")
    (hold,) = doc["state"]["suspensions"]
    assert hold["reason"] == "客户要求暂缓" and hold["by"].startswith("operator:")
