"""The admin API over HTTP (aiohttp test server, real broker and database): roles, masking,
dead-letter replay/discard, orders, call statistics and re-call, /metrics and /readyz."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from flows.documents import CALLS, ORDERS, CallOutcome, CallRecord, OrderStatus, StageRecord
from hub.deadletter import Attempt, DeadLetter
from hub.settings import AdminToken, Settings
from tests.integration.test_dlq import seed
from tests.support import eventually, topic_envelopes

pytestmark = pytest.mark.integration
VIEWER = {"Authorization": "Bearer viewer-token-for-tests-0001"}
OPERATOR = {"Authorization": "Bearer operator-token-for-tests-01"}
SECRETS = ("杭州某某科技有限公司", "13800001111", "文三路1号")


class OrderDoc(BaseModel):
    """An order document as the engine stores it, to seed the database (the hub itself writes plain
    dicts: this model lives here, not in flows/)."""

    model_config = ConfigDict(extra="allow")

    order_id: str
    partner: str
    external_order_id: str
    product: str
    scenario: str
    status: OrderStatus = OrderStatus.in_flight
    current_stage: str | None = None
    waiting_for: str | None = None
    stages: list[StageRecord] = Field(default_factory=list)
    calls: list[CallRecord] = Field(default_factory=list)
    order: dict[str, Any] = Field(default_factory=dict, description="the canonical WorkOrder payload")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    sla_deadline: datetime | None = None


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    settings = settings.model_copy(update={"admin_tokens": [
        AdminToken(name="vera", role="viewer", token=SecretStr(VIEWER["Authorization"][7:])),
        AdminToken(name="otto", role="operator", token=SecretStr(OPERATOR["Authorization"][7:])),
    ]})
    return await aiohttp_client(build_web_app(Runtime(settings)))


def rt(client: TestClient) -> Runtime:
    return client.app[RUNTIME]  # type: ignore[index]


async def seed_order(runtime: Runtime, order_id: str, *, letter: DeadLetter | None = None,
                     overdue: bool = False) -> None:
    """An order waiting at stage ``close`` whose notifyOrderResult call was dead-lettered."""
    assert runtime.db is not None
    now = datetime.now(UTC)
    calls = [
        CallRecord(call_id=f"{order_id}-c1", order_id=order_id, partner="resource", operation="design_request",
                   stage="design", idempotency_key=f"{order_id}:design", outcome=CallOutcome.ok,
                   attempts=[Attempt(at=now - timedelta(minutes=50), outcome="ok", duration_ms=40)],
                   started_at=now - timedelta(minutes=50), finished_at=now - timedelta(minutes=50),
                   duration_ms=40.0),
        CallRecord(call_id=f"{order_id}-c2", order_id=order_id, partner="esop", operation="notifyOrderResult",
                   stage="close", idempotency_key=f"{order_id}:close", outcome=CallOutcome.dead_lettered,
                   error="HTTP 503", attempts=[Attempt(at=now - timedelta(minutes=5), outcome="error", status="503",
                                                       duration_ms=900)],
                   started_at=now - timedelta(minutes=5), duration_ms=900.0,
                   dead_letter_id=letter.id if letter else None),
    ]
    order = OrderDoc(
        order_id=order_id, partner="esop", external_order_id=f"E-{order_id}", product="internet_line",
        scenario="open", status="waiting", current_stage="close", waiting_for="esop:notifyOrderResult",
        stages=[StageRecord(stage="design", kind="call", entered_at=now - timedelta(hours=1),
                            finished_at=now - timedelta(minutes=30), outcome="ok"),
                StageRecord(stage="close", kind="report", entered_at=now - timedelta(minutes=30))],
        calls=calls, order={"customer": {"name": SECRETS[0], "contact_phone": SECRETS[1]},
                            "addresses": [{"city": "杭州", "detail": SECRETS[2]}]},
        created_at=now - timedelta(hours=1), updated_at=now,
        sla_deadline=now - timedelta(minutes=1) if overdue else now + timedelta(days=2),
    )
    doc = order.model_dump()
    doc["_id"] = order_id
    await runtime.db[ORDERS].insert_one(doc)
    await runtime.db[CALLS].insert_many([{**c.model_dump(), "_id": c.call_id} for c in calls])


async def test_roles_are_enforced(client: TestClient) -> None:
    letter = await seed(rt(client), "ord-r")
    resp = await client.get("/admin/v1/dlq")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/admin/v1/dlq", headers={"Authorization": "Bearer wrong-token-000000000"})).status == 401
    assert (await client.get("/admin/v1/dlq", headers=VIEWER)).status == 200
    assert (await client.get(f"/admin/v1/dlq/{letter.id}", headers=VIEWER)).status == 200
    for path, body in ((f"/admin/v1/dlq/{letter.id}/replay", {}), (f"/admin/v1/dlq/{letter.id}/discard",
                                                                   {"reason": "x"}),
                       ("/admin/v1/dlq/replay", {"all": True}), ("/admin/v1/calls/recall", {"call_ids": ["c"]}),
                       ("/admin/v1/orders/ord-r/retry", {})):
        resp = await client.post(path, json=body, headers=VIEWER)
        assert resp.status == 403, path
        assert (await resp.json())["title"] == "Forbidden"
    shown = await (await client.get(f"/admin/v1/dlq/{letter.id}", headers=VIEWER)).json()
    assert shown["status"] == "dead" and shown["history"] == []  # the viewer changed nothing


async def test_operator_replays_and_discards_listings_are_masked(client: TestClient, settings: Settings) -> None:
    runtime = rt(client)
    a = await seed(runtime, "ord-a")
    b = await seed(runtime, "ord-b")
    listing = await client.get("/admin/v1/dlq?partner=esop", headers=VIEWER)
    body = await listing.json()
    assert body["total"] == 2 and {i["id"] for i in body["items"]} == {a.id, b.id}
    shown = await (await client.get(f"/admin/v1/dlq/{a.id}", headers=VIEWER)).text()
    assert "notifyOrderResult" in shown and not any(s in shown for s in SECRETS)

    patch = [{"op": "replace", "path": "/order/customer/contact_phone", "value": "13999999999"}]
    resp = await client.post(f"/admin/v1/dlq/{a.id}/replay", json={"patch": patch, "reason": "fixed"},
                             headers=OPERATOR)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["result"] == "ok"
    (env,) = await topic_envelopes(settings, a.source_topic, expect=1, wait=8)
    assert env.payload["order"]["customer"]["contact_phone"] == "13999999999"
    assert env.headers["replay-count"] == "1"

    again = await client.post(f"/admin/v1/dlq/{a.id}/replay", json={}, headers=OPERATOR)
    assert again.status == 409
    assert (await client.post(f"/admin/v1/dlq/{b.id}/discard", json={}, headers=OPERATOR)).status == 400
    resp = await client.post(f"/admin/v1/dlq/{b.id}/discard", json={"reason": "duplicate order"}, headers=OPERATOR)
    assert resp.status == 200
    assert (await client.get("/admin/v1/dlq/nope", headers=VIEWER)).status == 404

    history = await (await client.get("/admin/v1/dlq/history", headers=VIEWER)).json()
    assert {(h["who"], h["action"], h["result"], h["dead_letter_id"]) for h in history} == {
        ("api:otto", "replay", "ok", a.id), ("api:otto", "replay", "refused", a.id),
        ("api:otto", "discard", "ok", b.id)}
    assert "13999999999" not in repr(history)
    pending = await (await client.get("/admin/v1/dlq?status=dead", headers=VIEWER)).json()
    assert pending["total"] == 0


async def test_bulk_replay_by_filter_with_dry_run(client: TestClient, settings: Settings) -> None:
    runtime = rt(client)
    for i in range(4):
        await seed(runtime, f"ord-{i}", partner="esop" if i < 3 else "group")
    assert (await client.post("/admin/v1/dlq/replay", json={}, headers=OPERATOR)).status == 400
    dry = await (await client.post("/admin/v1/dlq/replay", json={"filter": {"partner": "esop"}, "dry_run": True},
                                   headers=OPERATOR)).json()
    assert (dry["matched"], dry["dry_run"], dry["ok"]) == (3, 3, 0)
    done = await (await client.post("/admin/v1/dlq/replay", json={"filter": {"partner": "esop"}, "rate": 50},
                                    headers=OPERATOR)).json()
    assert (done["matched"], done["ok"]) == (3, 3)
    out = await topic_envelopes(settings, f"{settings.topic_prefix}.out.esop", expect=3, wait=8)
    assert sorted(e.correlation_id for e in out) == ["ord-0", "ord-1", "ord-2"]


async def test_orders_show_retry_and_call_statistics(client: TestClient, settings: Settings) -> None:
    runtime = rt(client)
    letter = await seed(runtime, "ord-o")
    await seed_order(runtime, "ord-o", letter=letter, overdue=True)
    await seed_order(runtime, "ord-fine")

    listing = await (await client.get("/admin/v1/orders?overdue=true", headers=VIEWER)).json()
    assert [o["id"] for o in listing] == ["ord-o"]
    assert [o["id"] for o in await (await client.get("/admin/v1/orders?stage=close&product=internet_line",
                                                     headers=VIEWER)).json()] != []
    text = await (await client.get("/admin/v1/orders/ord-o", headers=VIEWER)).text()
    assert not any(s in text for s in SECRETS)
    order = await (await client.get("/admin/v1/orders/ord-o", headers=VIEWER)).json()
    assert order["overdue"] is True and order["current_wait"]["waiting_for"] == "esop:notifyOrderResult"
    design, close = order["stages"]
    assert design["duration_ms"] == pytest.approx(30 * 60_000, rel=0.01)
    assert close["open"] is True and close["duration_ms"] >= 30 * 60_000 - 1000
    assert [(c["operation"], c["outcome"]) for c in order["calls"]] == [
        ("design_request", "ok"), ("notifyOrderResult", "dead_lettered")]

    retry = await client.post("/admin/v1/orders/ord-o/retry", json={}, headers=OPERATOR)
    assert retry.status == 200, await retry.text()
    assert (await retry.json())["dead_letter_id"] == letter.id
    (env,) = await topic_envelopes(settings, letter.source_topic, expect=1, wait=8)
    assert env.correlation_id == "ord-o"
    assert (await client.post("/admin/v1/orders/ord-fine/retry", json={}, headers=OPERATOR)).status == 409
    assert (await client.post("/admin/v1/orders/nope/retry", json={}, headers=OPERATOR)).status == 404

    stats = await (await client.get("/admin/v1/calls/stats?since=2h", headers=VIEWER)).json()
    by_op = {(s["partner"], s["operation"]): s for s in stats["operations"]}
    esop = by_op[("esop", "notifyOrderResult")]
    assert (esop["total"], esop["succeeded"], esop["failed"], esop["success_rate"]) == (2, 0, 2, 0.0)
    design_stats = by_op[("resource", "design_request")]
    assert design_stats["success_rate"] == 1.0 and design_stats["p50_ms"] == 40.0
    failed = await (await client.get("/admin/v1/calls?outcome=failures", headers=VIEWER)).json()
    assert {c["call_id"] for c in failed} == {"ord-o-c2", "ord-fine-c2"}


async def test_metrics_and_readyz(client: TestClient) -> None:
    runtime = rt(client)
    await seed(runtime, "ord-m")
    await seed_order(runtime, "ord-m2")
    text = await (await client.get("/metrics")).text()
    topic = f"{runtime.settings.topic_prefix}.out.esop"
    assert f'hub_dead_letters_pending{{topic="{topic}"}} 1.0' in text
    assert 'hub_orders_in_flight{product="internet_line",stage="close"}' in text
    assert f'hub_dead_letters_total{{error_class="RetryableError",topic="{topic}"}}' in text
    for name in ("hub_delivery_attempts_total", "hub_stage_transitions_total", "hub_intake_latency_seconds",
                 "hub_envelopes_consumed_total", "hub_dlq_actions_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    ready = await client.get("/readyz")
    body = await ready.json()
    assert body["checks"]["kafka"]["ok"] and body["checks"]["mongo"]["ok"]
    assert ready.status == 200 if all(c["ok"] for c in body["checks"].values()) else 503


async def test_consumer_lag_gauge_counts_uncommitted_records(runtime: Runtime, settings: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from prometheus_client import generate_latest

    from app.admin import gauges
    from hub.kafka import EnvelopeProducer
    from tests.integration.test_dlq import call_envelope

    topic = f"{settings.topic_prefix}.out.esop"
    producer = EnvelopeProducer(settings, exact_offsets=True)  # exact end offsets on tansu
    for _ in range(3):
        await producer.send(topic, call_envelope("ord-lag"))  # one key: one partition
    await producer.stop()
    group = f"{settings.topic_prefix}-lag"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        records: list[Any] = []
        for _ in range(20):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
            if len(records) >= 3:
                break
        first = records[0]
        await consumer.commit({TopicPartition(topic, first.partition): first.offset + 1})
    finally:
        await consumer.stop()
    line = f'hub_consumer_lag{{group="{group}",topic="{topic}"}} 2.0'

    async def scraped() -> bool:  # as repeated scrapes do: a slow lag read shows at a later scrape
        await gauges.refresh(runtime, lag_ttl=0)
        return line in generate_latest().decode()

    await eventually(scraped, timeout=30, interval=0.2)


async def test_bad_queries_and_bodies_are_problem_documents(client: TestClient) -> None:
    for path in ("/admin/v1/dlq?since=yesterday-ish", "/admin/v1/dlq?status=bogus", "/admin/v1/orders?limit=x",
                 "/admin/v1/calls/stats?since=soon"):
        resp = await client.get(path, headers=VIEWER)
        assert resp.status == 400, path
        assert resp.content_type == "application/problem+json"
    letter = await seed(rt(client), "ord-q")
    resp = await client.post(f"/admin/v1/dlq/{letter.id}/replay", data=b"{not json", headers=OPERATOR)
    assert resp.status == 400
    resp = await client.post(f"/admin/v1/dlq/{letter.id}/replay", json={"patch": [{"op": "nope", "path": "/a"}]},
                             headers=OPERATOR)
    assert resp.status == 400 and "JSON patch" in (await resp.json())["detail"]
    shown = await (await client.get(f"/admin/v1/dlq/{letter.id}", headers=VIEWER)).json()
    assert shown["status"] == "dead"


async def test_aiohttps_own_refusals_are_problem_json(client: TestClient) -> None:
    """An unknown path, a wrong method and an admin body over the size limit are answered by aiohttp
    itself; they were text/plain lines, now problem+json like every other 4xx (the 405 keeps Allow)."""
    unknown = await client.get("/admin/v1/no-such-thing", headers=VIEWER)
    assert unknown.status == 404 and unknown.content_type == "application/problem+json"
    assert (await unknown.json())["status"] == 404
    wrong = await client.delete("/healthz")
    assert wrong.status == 405 and wrong.content_type == "application/problem+json" and "GET" in wrong.headers["Allow"]
    limit = rt(client).settings.intake_max_body_bytes + 65536
    big = await client.post("/admin/v1/dlq/replay", headers=OPERATOR, data=b"{" + b" " * (limit + 10) + b"}")
    assert big.status == 413 and big.content_type == "application/problem+json"
    body = await big.json()
    assert body["status"] == 413 and str(limit) in body["detail"]
