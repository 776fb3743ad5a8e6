"""Operator replay end to end: a real ``hub run`` worker, the ESOP SOAP simulator, and the operator
commands (``hub dlq …`` as subprocesses, the admin API on the worker's HTTP port).

ESOP rejects the close-report (notifyOrderResult) → dead letter, order held at close_out → ESOP
recovers → ``hub dlq replay ID --patch …`` → the order completes, ESOP has accepted exactly one
notifyOrderResult, carrying the patched field → a careless second replay (``force``) does not reach
ESOP again (the delivery agent's idempotency check)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from hub import topics
from tests.integration.flow_harness import OPERATOR, FlowEnv, flow_env  # noqa: F401  (fixture)
from tests.support import eventually

pytestmark = pytest.mark.integration
VIEWER = {"Authorization": "Bearer dev-viewer-token-0001"}


async def hub(env: FlowEnv, *args: str, code: int = 0) -> str:
    """``hub …`` as an operator runs it; async so the in-process simulator keeps answering."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hub", *args, env=env.hub.env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == code, (args, out.decode(), err.decode())
    return out.decode()


async def api(env: FlowEnv, method: str, path: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, env.hub.url + path, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def accepted_close_reports(env: FlowEnv) -> list[Any]:
    return [c for c in env.sim.calls("esop", "notifyOrderResult") if c.answered == "ok"]


async def test_dead_lettered_soap_close_report_replayed_after_recovery_completes_the_order_once(
        flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    await env.sim.mode("esop", "error")  # ESOP answers checkResult=0: a business rejection, dead-lettered at once
    order_id = await env.post_order("esop", "ESOP-REPLAY-1", "internet_line")
    held = await env.wait_order(order_id, lambda d: d["current_stage"] == "close_out" and any(
        c["operation"] == "close_report" and c["outcome"] == "dead_lettered" for c in d["calls"]), timeout=60)
    assert held["status"] != "completed"
    assert [c.answered for c in env.sim.calls("esop", "notifyOrderResult")] == ["rejected"]

    # what happened to the order? — the operator's view, masked
    shown = json.loads(await hub(env, "orders", "show", order_id, "--json"))
    close = next(c for c in shown["calls"] if c["operation"] == "close_report")
    assert close["outcome"] == "dead_lettered" and close["dead_letter_id"]
    letters = json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))
    (letter,) = letters["items"]
    assert letter["id"] == close["dead_letter_id"] and letter["error_class"] == "PartnerRejected"
    assert letter["source_topic"] == topics.outbound(env.settings.topic_prefix, "esop")
    status, listed = await api(env, "GET", f"/admin/v1/dlq?partner=esop&order={order_id}", VIEWER)
    assert status == 200 and [i["id"] for i in listed["items"]] == [letter["id"]]
    order_view = json.dumps(await api(env, "GET", f"/admin/v1/orders/{order_id}", VIEWER), ensure_ascii=False)
    assert "close_report" in order_view and "测试客户" not in order_view and "文一西路" not in order_view

    # ESOP is back; replay with a patch (the description ESOP should show), one command
    await env.sim.mode("esop", "ok")
    patch = '[{"op": "replace", "path": "/request/resultDesc", "value": "开通完成(补报)"}]'
    out = await hub(env, "dlq", "replay", letter["id"], "--patch", patch, "--reason", "ESOP recovered",
                    "--as", "ops:zhang")
    assert "ok 1" in out
    done = await env.wait_order(order_id, lambda d: d["status"] == "completed", timeout=30)
    assert next(c for c in done["calls"] if c["operation"] == "close_report")["outcome"] == "ok"
    (accepted,) = accepted_close_reports(env)
    assert accepted.body["hubOrderId"] == order_id and accepted.body["resultDesc"] == "开通完成(补报)"
    assert accepted.idempotency_key == close["idempotency_key"]

    # a second, careless replay over the admin API: recorded, produced, but ESOP is not called again
    status, body = await api(env, "POST", f"/admin/v1/dlq/{letter['id']}/replay", VIEWER, {"force": True})
    assert status == 403
    status, body = await api(env, "POST", f"/admin/v1/dlq/{letter['id']}/replay", OPERATOR, {"force": True})
    assert status == 200 and body["result"] == "ok" and body["replay_count"] == 2
    marker = await env.post_order("esop", "ESOP-REPLAY-2", "internet_line")  # through the same delivery agent
    await env.wait_order(marker, lambda d: d["status"] == "completed", timeout=60)
    assert [c.body["hubOrderId"] for c in accepted_close_reports(env)] == [order_id, marker]

    history = json.loads(await hub(env, "dlq", "history", "--id", letter["id"], "--json"))
    assert [(h["who"], h["action"], h["result"], h["replay_count"]) for h in history] == [
        ("api:dev-operator", "replay", "ok", 2), ("ops:zhang", "replay", "ok", 1)]
    assert history[1]["reason"] == "ESOP recovered"


async def test_gated_report_dead_letters_resolve_themselves_when_the_engine_retry_succeeds(
        flow_env: FlowEnv) -> None:  # noqa: F811
    """ESOP rejects the gated B001 report for a while: each round is dead-lettered; once ESOP is back
    the engine's own retry round gets through, and those letters are ``resolved`` — not pending, not
    replayable, recorded as done by the system — without any operator action."""
    env = flow_env
    await env.sim.mode("esop", "error")
    order_id = await env.post_order("group", "GRP-RESOLVE-1", "5g_lan")

    async def letters(**q: Any) -> list[dict[str, Any]]:
        return [d async for d in env.db.dead_letters.find({"order_id": order_id, **q})]

    await eventually(lambda: _at_least(letters(), 2), timeout=30)  # two failed rounds, two dead letters
    pending = json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))
    assert pending["total"] >= 2
    keys = {d["envelope"]["idempotency_key"] for d in await letters()}
    assert len(keys) == 1 and next(iter(keys)).startswith(f"call:{order_id}")  # one report, several rounds

    await env.sim.mode("esop", "ok")
    await env.wait_order(order_id, lambda d: d["current_stage"] == "core_design", timeout=30)

    async def all_resolved() -> bool:
        docs = await letters()
        return bool(docs) and all(d["status"] == "resolved" for d in docs)

    await eventually(all_resolved, timeout=15)
    resolved = await letters()
    assert json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))["total"] == 0
    history = json.loads(await hub(env, "dlq", "history", "--id", resolved[0]["_id"], "--json"))
    assert [(h["action"], h["result"], h["who"]) for h in history] == [("resolve", "ok", "system:delivery-esop")]
    out = await hub(env, "dlq", "replay", resolved[0]["_id"], "--json", code=1)  # resolved: nothing to replay
    assert json.loads(out)["refused"] == 1
    status, body = await api(env, "GET", f"/admin/v1/dlq?status=resolved&order={order_id}", VIEWER)
    assert status == 200 and body["total"] == len(resolved)


async def test_raw_record_on_an_inbound_topic_is_dead_lettered_with_partner_and_order_id(
        flow_env: FlowEnv) -> None:  # noqa: F811
    """The intake router dead-letters a record that is not an envelope; the partner comes from the
    topic name, the order id from the record's Kafka key."""
    env = flow_env
    topic = topics.inbound(env.settings.topic_prefix, "esop")
    producer = AIOKafkaProducer(bootstrap_servers=env.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"\xff not an envelope", key=b"ord-raw-e2e")
    finally:
        await producer.stop()
    doc = await eventually(lambda: env.db.dead_letters.find_one({"source_topic": topic}), timeout=20)
    assert (doc["partner"], doc["order_id"], doc["origin"]["partner"]) == ("esop", "ord-raw-e2e", "esop")
    assert doc["origin"]["offset"] is not None and doc["raw_value_b64"]


async def _at_least(docs: Any, n: int) -> bool:
    return len(await docs) >= n
