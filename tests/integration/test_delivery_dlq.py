"""Outbound delivery: a partner down past the retry budget ⇒ dead letter (MongoDB + ``.dlq`` topic)
with the original envelope and every attempt; the order shows the failed call; replaying the dead
letter's envelope finishes the order, and a delivered envelope is never delivered twice."""

from __future__ import annotations

import json

import aiohttp
import pytest

from hub import topics
from hub.envelope import Envelope
from hub.kafka import EnvelopeProducer
from tests.integration.flow_harness import FAST_POLICY, OPERATOR, FlowEnv, flow_env  # noqa: F401  (fixture)
from tests.support import read_topic

pytestmark = pytest.mark.integration


async def test_partner_down_past_retry_budget_goes_to_dead_letter_and_replay_completes(
        flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    prefix = env.settings.topic_prefix
    await env.sim.mode("ip_workbench", "down")  # connections cut, no answer at all
    order_id = await env.post_order("esop", "ESOP-DLQ-1", "internet_line")

    doc = await env.wait_order(order_id, lambda d: "activation at ip_workbench failed" in (d.get("blocked_reason")
                                                                                         or ""))
    assert doc["status"] == "waiting" and doc["current_stage"] == "activation"
    (open_call,) = [c for c in doc["open_calls"].values() if c["operation"] == "activation"]
    assert open_call["dead_letter_id"] and "replay dead letter" in doc["blocked_reason"]
    call = await env.db.calls.find_one({"_id": open_call["id"]})  # the flat call log
    assert call is not None and call["outcome"] == "dead_lettered"
    assert call["dead_letter_id"] == open_call["dead_letter_id"]
    assert call["started_at"] < call["finished_at"]  # the admin API filters and sorts calls by started_at
    async with aiohttp.ClientSession() as s, s.get(f"{env.hub.url}/admin/v1/calls?outcome=failures&since=1h",
                                                   headers=OPERATOR) as r:
        assert r.status == 200, await r.text()
        assert open_call["id"] in {c["call_id"] for c in await r.json()}  # the operator's failed-call list
    assert len(call["attempts"]) == FAST_POLICY["max_attempts"]
    assert all(a["outcome"] == "error" for a in call["attempts"])
    assert env.sim.calls("ip_workbench") == []  # the partner never answered anything

    letter = await env.db.dead_letters.find_one({"_id": call["dead_letter_id"]})
    assert letter is not None
    assert letter["source_topic"] == topics.outbound(prefix, "ip_workbench")
    assert letter["partner"] == "ip_workbench" and letter["order_id"] == order_id
    assert letter["error_class"] == "RetriesExhausted"
    assert len(letter["attempts"]) == FAST_POLICY["max_attempts"]
    assert letter["envelope"]["idempotency_key"] == call["idempotency_key"]  # the exact original envelope
    sent = letter["envelope"]["payload"]["request"]
    assert all(sent[k] == v for k, v in open_call["payload"].items())  # what the engine asked for (+ callback_ref)
    records = await read_topic(env.settings, topics.dead_letter(letter["source_topic"]), expect=1)
    assert [json.loads(r.value)["id"] for r in records] == [letter["_id"]]

    # the partner is back; an operator replays the dead letter (same envelope, same idempotency key)
    await env.sim.mode("ip_workbench", "ok")
    original = Envelope.model_validate(letter["envelope"])
    replay = original.model_copy(update={"headers": {**original.headers, "replay-count": "1"}})
    producer = EnvelopeProducer(env.settings)
    try:
        await producer.send(letter["source_topic"], replay)
        await verified(env, order_id)
        done = await env.wait_order(order_id, lambda d: d["status"] == "completed")
        assert done["open_calls"] == {}
        assert len(env.sim.calls("ip_workbench", "activation")) == 1

        # replaying again after success: the delivery is recorded, the partner is not called again
        await producer.send(letter["source_topic"], replay)
        marker = await env.post_order("esop", "ESOP-DLQ-2", "internet_line")  # goes through the same agent
        await verified(env, marker)
        await env.wait_order(marker, lambda d: d["status"] == "completed")
        hits = [c.body["orderId"] for c in env.sim.calls("ip_workbench", "activation")]
        assert hits == [order_id, marker]
    finally:
        await producer.stop()


async def test_business_rejection_is_not_retried_and_is_dead_lettered(flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    await env.sim.mode("resource", "error")  # 资管 answers code "1" with its msg
    order_id = await env.post_order("esop", "ESOP-DLQ-3", "internet_line")
    doc = await env.wait_order(order_id, lambda d: "failed" in (d.get("blocked_reason") or ""))
    assert doc["current_stage"] == "failed_call"  # a partner's "no" reaches the blueprint's failure stage
    call = await env.db.calls.find_one({"order_id": order_id, "operation": "design_request"})
    assert call is not None and (call["partner"], call["outcome"]) == ("resource", "dead_lettered")
    assert len(call["attempts"]) == 1 and call["error"].startswith("code='1'") and "模拟失败" in call["error"]
    letter = await env.db.dead_letters.find_one({"_id": call["dead_letter_id"]})
    assert letter is not None and letter["error_class"] == "PartnerRejected"
    assert len(env.sim.calls("resource", "design_request")) == 1


async def verified(env: FlowEnv, order_id: str) -> None:
    """The field user submits the internet line's verification stage (业务验证: an empty form passes)."""
    await env.wait_order(order_id, lambda d: d.get("current_stage") == "verification")
    status, body = await env.submit(order_id, "verification", {})
    assert status == 202, body
