"""Operator replay end to end on the v2 engine: a real ``hub run`` worker, the ESOP SOAP simulator,
and the operator commands (``hub dlq …`` as subprocesses, the admin API on the worker's HTTP port).

* ESOP cannot be reached (a SOAP server fault on every attempt) at the close-report → dead letter,
  the order held at close_report → ESOP recovers → ``hub dlq replay ID --patch …`` → the order
  completes, ESOP has accepted exactly one notifyOrderResult, carrying the patched field → a careless
  second replay (``force``) does not reach ESOP again (the delivery agent's idempotency check).
* ESOP *refuses* the close-report (checkResult=0) → the blueprint's failed-call stage (G3): the user
  sends it again from the order; its dead letter is resolved, so no replay makes ESOP see it twice.
* ESOP refuses a gated progress report → the order waits for the user's retry (G2); each retry is a
  new report, and the letters it supersedes are resolved."""

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


def at(node: str, phase: str = "active") -> Any:
    def check(doc: dict[str, Any]) -> bool:
        tokens = list(((doc.get("state") or {}).get("tokens") or {}).values())
        return [(t["node"], t["phase"]) for t in tokens] == [(node, phase)]
    return check


async def internet_line_to_close_out(env: FlowEnv, external_id: str) -> str:
    """An ESOP internet line order past its manual 业务验证 (an empty form: no international sites)."""
    order_id = await env.post_order("esop", external_id, "internet_line")
    await env.wait_order(order_id, at("verification"), timeout=60)
    status, body = await env.submit(order_id, "verification", {})
    assert status == 202, body
    return order_id


async def test_dead_lettered_soap_close_report_replayed_after_recovery_completes_the_order_once(
        flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    await env.sim.mode("esop", "http_error")  # a SOAP server fault: retried, then dead-lettered
    order_id = await internet_line_to_close_out(env, "ESOP-REPLAY-1")
    held = await env.wait_order(order_id, lambda d: d["current_stage"] == "close_report" and "replay dead letter"
                                in (d.get("blocked_reason") or ""), timeout=60)
    assert held["status"] == "waiting" and "close_report at esop failed" in held["blocked_reason"]
    assert [c.answered for c in env.sim.calls("esop", "notifyOrderResult")] == ["fault"] * 3  # the retry budget

    # what happened to the order? — the operator's view, masked
    shown = json.loads(await hub(env, "orders", "show", order_id, "--json"))
    close = next(c for c in shown["calls"] if c["operation"] == "close_report")
    assert close["outcome"] == "dead_lettered" and close["dead_letter_id"]
    assert close["dead_letter_id"] in shown["blocked_reason"]
    letters = json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))
    (letter,) = letters["items"]
    assert letter["id"] == close["dead_letter_id"] and letter["error_class"] == "RetriesExhausted"
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
    await env.wait_order(order_id, lambda d: d["status"] == "completed", timeout=30)

    async def close_call_ok() -> bool:
        doc = await env.db.calls.find_one({"order_id": order_id, "operation": "close_report"})
        return doc is not None and doc["outcome"] == "ok"

    await eventually(close_call_ok, timeout=10)  # the flat call log says the call went through
    (accepted,) = accepted_close_reports(env)
    assert accepted.body["hubOrderId"] == order_id and accepted.body["resultDesc"] == "开通完成(补报)"
    assert accepted.idempotency_key == close["idempotency_key"]

    # a second, careless replay over the admin API: recorded, produced, but ESOP is not called again
    status, body = await api(env, "POST", f"/admin/v1/dlq/{letter['id']}/replay", VIEWER, {"force": True})
    assert status == 403
    status, body = await api(env, "POST", f"/admin/v1/dlq/{letter['id']}/replay", OPERATOR, {"force": True})
    assert status == 200 and body["result"] == "ok" and body["replay_count"] == 2
    marker = await internet_line_to_close_out(env, "ESOP-REPLAY-2")  # through the same delivery agent
    await env.wait_order(marker, lambda d: d["status"] == "completed", timeout=60)
    assert [c.body["hubOrderId"] for c in accepted_close_reports(env)] == [order_id, marker]

    history = json.loads(await hub(env, "dlq", "history", "--id", letter["id"], "--json"))
    assert [(h["who"], h["action"], h["result"], h["replay_count"]) for h in history] == [
        ("api:dev-operator", "replay", "ok", 2), ("ops:zhang", "replay", "ok", 1)]
    assert history[1]["reason"] == "ESOP recovered"


async def letters_of(env: FlowEnv, order_id: str, **q: Any) -> list[dict[str, Any]]:
    return [d async for d in env.db.dead_letters.find({"order_id": order_id, **q}).sort("created_at", 1)]


async def test_a_refused_close_report_waits_for_the_user_and_its_dead_letter_is_not_replayable(
        flow_env: FlowEnv) -> None:  # noqa: F811
    """A partner's "no" is the blueprint's business (G3), not the operator's: the order waits at the
    failed-call stage with the partner's reason, the user sends the close-report again from there, and
    its dead letter is resolved at once — replaying it would make ESOP see the close-report twice while
    the order, no longer waiting for that call, would not move."""
    env = flow_env
    await env.sim.mode("esop", "error")  # checkResult=0: a business rejection
    order_id = await internet_line_to_close_out(env, "ESOP-REFUSED-1")
    held = await env.wait_order(order_id, at("failed_call"), timeout=60)
    assert held["status"] == "waiting"
    assert held["blocked_reason"].startswith("close_report at esop failed: ESOP报结失败（ESOP模拟失败")
    assert [c.answered for c in env.sim.calls("esop", "notifyOrderResult")] == ["rejected"]

    async def resolved_letter() -> list[dict[str, Any]]:
        docs = await letters_of(env, order_id)
        return docs if docs and all(d["status"] == "resolved" for d in docs) else []

    (letter,) = await eventually(resolved_letter, timeout=15)
    assert letter["error_class"] == "PartnerRejected"
    assert json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))["total"] == 0
    history = json.loads(await hub(env, "dlq", "history", "--id", letter["_id"], "--json"))
    assert [(h["action"], h["result"], h["who"]) for h in history] == [("resolve", "ok", "system:flow-engine")]
    out = await hub(env, "dlq", "replay", letter["_id"], "--json", code=1)
    assert json.loads(out)["refused"] == 1

    await env.sim.mode("esop", "ok")
    status, body = await env.submit(order_id, "failed_call", {})  # the user clicks again (G3)
    assert status == 202, body
    done = await env.wait_order(order_id, lambda d: d["status"] == "completed", timeout=30)
    assert done["blocked_reason"] is None
    assert [c.answered for c in env.sim.calls("esop", "notifyOrderResult")] == ["rejected", "ok"]
    assert [c.body["hubOrderId"] for c in accepted_close_reports(env)] == [order_id]


async def test_gated_report_dead_letters_are_resolved_by_the_users_retry(flow_env: FlowEnv) -> None:  # noqa: F811
    """ESOP rejects the gated B001 report: dead-lettered, the order held until the user retries (G2).
    Each retry sends the report again under a new id; the letters it supersedes are ``resolved`` —
    not pending, not replayable, recorded as done by the system — so once ESOP is back and the
    user's last retry gets through, nothing is left for an operator and ESOP accepted B001 once."""
    env = flow_env
    await env.sim.mode("esop", "error")
    order_id = await env.post_order("group", "GRP-RESOLVE-1", "5g_lan")

    async def n_letters(n: int) -> bool:
        return len(await letters_of(env, order_id)) == n

    await eventually(lambda: n_letters(1), timeout=30)
    await env.wait_order(order_id, lambda d: at("accept", "enter")(d) and d["blocked_reason"] is not None)
    pending = json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))
    assert pending["total"] == 1  # the order's refused report, replayable until the user retries

    status, _ = await env.retry(order_id, "accept")  # still refused: a second letter, the first superseded
    assert status == 202
    await eventually(lambda: n_letters(2), timeout=30)
    first, second = await letters_of(env, order_id)
    await env.wait_order(order_id, lambda d: at("accept", "enter")(d) and d["blocked_reason"] is not None)
    assert json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))["total"] == 1
    superseded = await env.db.dead_letters.find_one({"_id": first["_id"]})
    assert superseded is not None and superseded["status"] == "resolved"
    keys = [d["envelope"]["idempotency_key"] for d in (first, second)]
    assert len(set(keys)) == 2 and all(k.startswith(f"v2:{order_id}:") and k.endswith(":report") for k in keys)

    await env.sim.mode("esop", "ok")
    status, _ = await env.retry(order_id, "accept")
    assert status == 202
    await env.wait_order(order_id, at("core_design"), timeout=30)

    async def all_resolved() -> bool:
        docs = await letters_of(env, order_id)
        return len(docs) == 2 and all(d["status"] == "resolved" for d in docs)

    await eventually(all_resolved, timeout=15)
    assert json.loads(await hub(env, "dlq", "list", "--order", order_id, "--json"))["total"] == 0
    for letter in (first, second):
        history = json.loads(await hub(env, "dlq", "history", "--id", letter["_id"], "--json"))
        assert [(h["action"], h["result"], h["who"]) for h in history] == [("resolve", "ok", "system:flow-engine")]
    out = await hub(env, "dlq", "replay", second["_id"], "--json", code=1)  # resolved: nothing to replay
    assert json.loads(out)["refused"] == 1
    status, body = await api(env, "GET", f"/admin/v1/dlq?status=resolved&order={order_id}", VIEWER)
    assert status == 200 and body["total"] == 2
    assert [c.answered for c in env.sim.calls("esop", "reportProgress")] == ["rejected", "rejected", "ok"]


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

