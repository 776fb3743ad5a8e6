"""Issue 17, found by the outside probe: callbacks and manual submissions (flows/http.py) against the
real broker and database, the hub's web app on an aiohttp test server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from flows.documents import ORDERS
from flows.runtime.agents import load_v2_library
from flows.runtime.document import new_document
from flows.store import EVENTS
from hub import topics
from hub.settings import AdminToken, Settings
from simulators.fieldapp import sample_fields
from tests.support import topic_envelopes

pytestmark = pytest.mark.integration
OPERATOR = {"Authorization": "Bearer operator-token-for-tests-01"}
RESOURCE = {"X-Api-Key": "dev-resource-key-0001"}
CONSTRUCTION = {"X-Api-Key": "dev-construction-key-0001"}


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    settings = settings.model_copy(update={"admin_tokens": [
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR["Authorization"][7:]))]})
    return await aiohttp_client(build_web_app(Runtime(settings)))


def rt(client: TestClient) -> Runtime:
    return client.app[RUNTIME]  # type: ignore[index]


async def seed_v2(runtime: Runtime, order_id: str, *, at: str = "verification",
                  open_call_to: str | None = None) -> dict[str, Any]:
    """An ESOP internet-line order (v2 document) waiting at user node ``at``; with ``open_call_to``,
    also waiting for an answer from that partner."""
    assert runtime.db is not None
    bp = load_v2_library(runtime).get("internet_line", "open")
    doc = new_document(order_id, {"partner": "esop", "external_order_id": f"E-{order_id}", "order": {},
                                  "protocol": "rest"}, bp, time.time())
    doc["state"] = {"status": "running", "tokens": {"t1": {"node": at, "phase": "active"}}, "data": {}, "trail": []}
    doc["current_stage"] = at
    if open_call_to:
        cid = f"{order_id}:3:call"
        doc["open_calls"] = {cid: {"type": "send_call", "id": cid, "call_id": cid, "partner": open_call_to,
                                   "operation": "design_request", "node": "design", "sent_at": time.time()}}
    await runtime.db[ORDERS].insert_one(doc)
    return doc


async def journaled(runtime: Runtime, order_id: str) -> int:
    assert runtime.db is not None
    return int(await runtime.db[EVENTS].count_documents({"order_id": order_id}))


async def test_a_callback_over_the_broker_record_size_is_413_and_not_journaled(client: TestClient) -> None:
    """Under the HTTP limit (1 MiB + 64 KiB) but over the broker's 1 MiB record: retrying can never
    succeed, so 413 naming max_bytes — and nothing journaled that recovery would re-send forever."""
    await seed_v2(rt(client), "ord-big", open_call_to="resource")
    body = {"order_id": "ord-big", "callback_ref": "ord-big:3:call", "result": {"blob": "x" * 1_048_000}}
    resp = await client.post("/api/v1/partners/resource/callbacks", json=body, headers=RESOURCE)
    problem = await resp.json(content_type=None)
    assert resp.status == 413 and resp.content_type == "application/problem+json", problem
    assert problem["max_bytes"] == 1_048_576
    assert await journaled(rt(client), "ord-big") == 0


async def test_a_callback_for_an_order_not_waiting_for_that_partner_is_403(client: TestClient,
                                                                          settings: Settings) -> None:
    """A partner's key could post events against any order id (another partner's, or none) and got 202
    with the event journaled. Now: its own order or one with an open call to it; else 403, the same
    answer whether the order exists or not, nothing journaled, nothing produced."""
    await seed_v2(rt(client), "ord-res", open_call_to="resource")
    for order_id in ("ord-res", "ord-nobody"):
        resp = await client.post("/api/v1/partners/construction/callbacks", headers=CONSTRUCTION,
                                 json={"order_id": order_id, "callback_ref": "ord-res:3:call", "status": "ok"})
        assert resp.status == 403, await resp.text()
        assert resp.content_type == "application/problem+json"
    assert await journaled(rt(client), "ord-res") == 0 and await journaled(rt(client), "ord-nobody") == 0
    ok = await client.post("/api/v1/partners/resource/callbacks", headers=RESOURCE,
                           json={"order_id": "ord-res", "callback_ref": "ord-res:3:call", "status": "ok"})
    assert ok.status == 202, await ok.text()
    (env,) = await topic_envelopes(settings, topics.orders(settings.topic_prefix), expect=1)
    assert (env.type, env.source, env.correlation_id) == ("callback", "resource", "ord-res")


def verification_data(runtime: Runtime, dial: str = "ping ok") -> dict[str, Any]:
    bp = load_v2_library(runtime).get("internet_line", "open")
    return {**sample_fields(list(bp.nodes["verification"].fields)), "ipv6_dial_test": dial}


async def test_a_submission_records_the_token_identity_not_the_body(client: TestClient,
                                                                    settings: Settings) -> None:
    """``submitted_by`` in the body replaced the token's identity in the stage record; now the
    authenticated operator is recorded and the body's name is kept as ``on_behalf_of``."""
    await seed_v2(rt(client), "ord-who")
    resp = await client.post("/api/v1/orders/ord-who/stages/verification/submit", headers=OPERATOR,
                             json={"data": verification_data(rt(client)), "submitted_by": "admin:ceo"})
    assert resp.status == 202, await resp.text()
    (env,) = await topic_envelopes(settings, topics.orders(settings.topic_prefix), expect=1)
    assert env.payload["submitted_by"] == "operator:otto" and env.payload["on_behalf_of"] == "admin:ceo"


async def test_a_different_second_submission_is_409_with_what_was_submitted(client: TestClient) -> None:
    """A second, different submission to the same stage visit was answered duplicate: true and
    dropped; now 409 with the accepted one. The same submission again stays a duplicate (202)."""
    await seed_v2(rt(client), "ord-twice")
    data = verification_data(rt(client))
    url = "/api/v1/orders/ord-twice/stages/verification/submit"
    first = await client.post(url, headers=OPERATOR, json={"data": data})
    assert first.status == 202, await first.text()
    same = await client.post(url, headers=OPERATOR, json={"data": data})
    assert same.status == 202 and (await same.json())["duplicate"] is True
    other = verification_data(rt(client), dial="no answer")
    conflict = await client.post(url, headers=OPERATOR, json={"data": other})
    body = await conflict.json(content_type=None)
    assert conflict.status == 409 and conflict.content_type == "application/problem+json", body
    assert body["submitted"] == {"data": data, "submitted_by": "operator:otto"}
