"""Issue 8 item 1: nesting limits on every JSON ingress, and "no body answered 202 may later fail to
become an order" — everything the router would refuse is refused at intake instead."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub import topics
from hub.envelope import Envelope
from hub.jsonlimits import DEFAULT_MAX_DEPTH, json_depth_exceeds, value_depth
from hub.settings import Settings
from tests.integration.test_intake import ESOP_KEY, URL, order
from tests.support import read_topic, records_before_marker

JSON = {**ESOP_KEY, "Content-Type": "application/json"}


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(build_web_app(Runtime(settings)))


def nested_order(ext: str, depth: int) -> bytes:
    """A valid order whose JSON nests exactly ``depth`` levels (root object = 1, extensions = 2)."""
    inner = "[" * (depth - 2) + "1" + "]" * (depth - 2)
    body = json.dumps(order(ext, extensions={}), ensure_ascii=False)
    raw = body.replace('"extensions": {}', f'"extensions": {{"deep": {inner}}}').encode()
    assert depth > 500 or value_depth(json.loads(raw)) == depth
    return raw


@pytest.mark.parametrize("depth", [200, 10_000])
async def test_too_deep_order_is_a_400_naming_the_limit_and_nothing_is_produced(
    client: TestClient, settings: Settings, depth: int
) -> None:
    # depth 200 was answered 202 and then dead-lettered by the router; 10,000 was a 500 + traceback
    resp = await client.post(URL, data=nested_order(f"E-deep-{depth}", depth), headers=JSON)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert f"limit of {DEFAULT_MAX_DEPTH} levels" in problem["detail"]
    assert problem["max_depth"] == DEFAULT_MAX_DEPTH
    assert problem["errors"][0]["type"] == "too_deep"
    assert await records_before_marker(settings, topics.inbound(settings.topic_prefix, "esop")) == []


@pytest.mark.parametrize("body", [b"[" * 500_000 + b"]" * 500_000, b'{"a":' * 150_000 + b"1" + b"}" * 150_000])
async def test_half_a_million_levels_is_a_400_not_a_500(client: TestClient, body: bytes) -> None:
    resp = await client.post(URL, data=body, headers=JSON)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    assert "limit of 64 levels" in (await resp.json())["detail"]


async def test_brackets_inside_strings_do_not_count() -> None:
    tricky = json.dumps({"note": "[" * 1000 + "{" * 1000, "q": '\\"[[[['}).encode()
    assert not json_depth_exceeds(tricky, 3)
    assert json_depth_exceeds(b'{"a": [[[1]]]}', 3)


async def test_an_order_at_the_limit_is_accepted_and_survives_the_router_and_the_store(
    client: TestClient, settings: Settings
) -> None:
    resp = await client.post(URL, data=nested_order("E-at-limit", DEFAULT_MAX_DEPTH), headers=JSON)
    assert resp.status == 202, await resp.text()
    (record,) = await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    # what the router does with it (app/router.py): must parse, not be dead-lettered
    env = Envelope.from_kafka(record.value, list(record.headers))
    assert env.id == (await resp.json())["envelope_id"]
    runtime = client.app[RUNTIME]
    assert runtime.db is not None
    stored = await runtime.db["intake_keys"].find_one({"_id": env.idempotency_key})
    assert stored is not None and stored["state"] == "accepted" and stored["envelope"]["id"] == env.id


async def test_a_body_that_cannot_be_re_encoded_is_a_400_not_a_500(client: TestClient, settings: Settings) -> None:
    # an unpaired surrogate is valid JSON syntax for json.loads but cannot become UTF-8 on Kafka
    body = json.dumps(order("E-surrogate")).replace('"X9"', '"\\ud800"').encode()
    resp = await client.post(URL, data=body, headers=JSON)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    assert await records_before_marker(settings, topics.inbound(settings.topic_prefix, "esop")) == []


async def test_depth_limit_is_settable(settings: Settings, aiohttp_client: Any) -> None:
    client = await aiohttp_client(build_web_app(Runtime(settings.model_copy(update={"intake_max_depth": 8}))))
    resp = await client.post(URL, data=nested_order("E-nine", 9), headers=JSON)
    assert resp.status == 400 and (await resp.json())["max_depth"] == 8
    assert (await client.post(URL, data=nested_order("E-eight", 8), headers=JSON)).status == 202


async def test_deep_callback_and_submission_bodies_are_400(client: TestClient) -> None:
    deep = b'{"order_id": "ord-1", "result": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    resp = await client.post("/api/v1/partners/esop/callbacks", data=deep, headers=JSON)
    assert resp.status == 400, await resp.text()
    assert "limit of 64 levels" in (await resp.json())["detail"]
    admin = {"Authorization": "Bearer dev-operator-token-0001", "Content-Type": "application/json"}
    resp = await client.post("/api/v1/orders/ord-1/stages/design/submit", data=deep, headers=admin)
    assert resp.status == 400, await resp.text()
    assert "limit of 64 levels" in (await resp.json())["detail"]


async def test_a_body_under_the_limit_that_the_broker_would_refuse_is_a_400_not_a_503_loop(
    client: TestClient, settings: Settings
) -> None:
    # 1,048,000 bytes passes the 1 MiB body limit; wrapped as an envelope it exceeds the producer's
    # 1 MiB record limit, which used to be a BrokerUnavailable → 503 on every retry
    body = order("E-huge")
    body["extensions"] = {"blob": ""}
    pad = 1_048_000 - len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    body["extensions"]["blob"] = "x" * pad
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(raw) <= 1_048_576
    resp = await client.post(URL, data=raw, headers=JSON)
    assert resp.status == 400, await resp.text()
    assert "as an envelope" in (await resp.json())["detail"]
    assert await records_before_marker(settings, topics.inbound(settings.topic_prefix, "esop")) == []


async def test_a_field_name_with_nul_is_a_400_not_an_accepted_order_that_cannot_be_stored(
    client: TestClient, settings: Settings
) -> None:
    # valid JSON, but BSON keys cannot hold NUL: the intake record and the order document would fail
    body = json.dumps(order("E-nul")).replace('"esopFlowId"', '"esop\\u0000FlowId"').encode()
    resp = await client.post(URL, data=body, headers=JSON)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["errors"][0]["type"] == "nul_in_key"
    assert await records_before_marker(settings, topics.inbound(settings.topic_prefix, "esop")) == []
    assert (await client.post(URL, json=order("E-after-nul"), headers=ESOP_KEY)).status == 202
