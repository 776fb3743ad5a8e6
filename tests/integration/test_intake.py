"""REST order intake against the real broker (tansu) and database (SecantusDB)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.runtime import Runtime
from app.web import build_web_app
from hub import topics
from hub.order import order_id_for
from hub.settings import Settings
from tests.support import envelopes, read_topic, records_before_marker, topic_envelopes

ESOP_KEY = {"X-Api-Key": "dev-esop-key-0001"}
URL = "/api/v1/partners/esop/orders"


def order(ext: str = "E-1001", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_order_id": ext,
        "product": "internet_line",
        "scenario": "open",
        "customer": {"name": "杭州某某科技有限公司", "contact_phone": "13800000000"},
        "addresses": [{"role": "install", "city": "杭州", "district": "西湖区", "detail": "文三路1号"}],
        "bandwidth_mbps": 100,
        "access_type": "PON",
        # a consistent group (issue 13's intake check): this order and one other
        "fusion": {"fusion_key": f"F-{ext}", "related_count": 2, "related_order_ids": [ext, f"{ext}-2"]},
        "extensions": {"esopFlowId": "X9"},
    }
    body.update(over)
    return body


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(build_web_app(Runtime(settings)))


def config_copy(settings: Settings, tmp_path: Path, *, scenarios: tuple[str, ...] = (), no_flows: bool = False
                ) -> Settings:
    """Settings on a copy of ``config/``: with internet_line blueprints for more ``scenarios`` (copies
    of /open), or with no blueprints at all — intake admission follows the blueprints installed."""
    config = tmp_path / "config"
    shutil.copytree(settings.config_dir, config)
    flows = config / "flows"
    if no_flows:  # blueprints, fragments and templates, in every folder
        for f in flows.rglob("*.yaml"):
            f.unlink()
    for scenario in scenarios:  # a blueprint's name is unique in the library: the copy gets its own
        text = (flows / "internet_line" / "open.yaml").read_text(encoding="utf-8")
        text = text.replace("\nscenario: open\n", f"\nscenario: {scenario}\n", 1)
        text = text.replace("\nname: p02-1-internet-line-open\n", f"\nname: p02-1-internet-line-{scenario}\n", 1)
        (flows / "internet_line" / f"{scenario}.yaml").write_text(text, encoding="utf-8")
    return settings.model_copy(update={"config_dir": config})


async def test_accepted_order_lands_on_the_partner_topic_as_a_canonical_envelope(
    client: TestClient, settings: Settings
) -> None:
    resp = await client.post(URL, json=order(), headers={**ESOP_KEY, "X-Request-Id": "req-7"})
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert answer["order_id"] == order_id_for("esop", "E-1001", "open")

    records = await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    (env,) = envelopes(records)
    assert env.id == answer["envelope_id"]
    assert records[0].key == answer["order_id"].encode()
    assert (env.type, env.source, env.protocol) == ("order.received", "esop", "rest")
    assert env.correlation_id == answer["order_id"]
    assert env.idempotency_key == "order:esop:E-1001:open"
    assert (env.product, env.scenario) == ("internet_line", "open")
    assert env.payload["customer"]["name"] == "杭州某某科技有限公司"
    assert env.payload["fusion"]["related_count"] == 2
    assert env.payload["extensions"] == {"esopFlowId": "X9"}
    assert env.headers["partner-request-id"] == "req-7"


async def test_group_orchestrator_has_its_own_endpoint_and_topic(client: TestClient, settings: Settings) -> None:
    resp = await client.post(
        "/api/v1/partners/group/orders",
        json=order("G-1", product="5g_lan"),
        headers={"X-Api-Key": "dev-group-key-0001"},
    )
    assert resp.status == 202
    (env,) = await topic_envelopes(settings, topics.inbound(settings.topic_prefix, "group"), expect=1)
    assert env.source == "group" and env.product == "5g_lan"
    # keys are per partner: ESOP's key does not open the group endpoint
    resp = await client.post("/api/v1/partners/group/orders", json=order("G-2"), headers=ESOP_KEY)
    assert resp.status == 401


async def test_same_order_twice_gets_the_first_answer_and_one_envelope(
    settings: Settings, tmp_path: Path, aiohttp_client: Any
) -> None:
    config = await asyncio.to_thread(config_copy, settings, tmp_path, scenarios=("change",))
    client = await aiohttp_client(await asyncio.to_thread(lambda: build_web_app(Runtime(config))))  # CPU: off the loop
    first = await client.post(URL, json=order("E-dup"), headers=ESOP_KEY)
    second = await client.post(URL, json=order("E-dup"), headers=ESOP_KEY)
    assert first.status == second.status == 202
    assert await first.json() == await second.json()
    assert second.headers.get("Hub-Duplicate") == "true"
    # a different scenario of the same external order is a different order
    third = await client.post(URL, json=order("E-dup", scenario="change"), headers=ESOP_KEY)
    assert (await third.json())["order_id"] != (await first.json())["order_id"]

    records = await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), expect=2, wait=6)
    keys = sorted(e.idempotency_key for e in envelopes(records))
    assert keys == ["order:esop:E-dup:change", "order:esop:E-dup:open"]


async def test_concurrent_duplicates_all_get_the_same_answer(client: TestClient) -> None:
    answers = await asyncio.gather(*(client.post(URL, json=order("E-race"), headers=ESOP_KEY) for _ in range(8)))
    bodies = [await r.json() for r in answers]
    assert all(r.status == 202 for r in answers)
    assert len({b["order_id"] for b in bodies}) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, 401), ({"X-Api-Key": "wrong-key-123456"}, 401), ({"X-API-KEY": "dev-esop-key-0001"}, 202)],
)
async def test_api_key_is_required(client: TestClient, headers: dict[str, str], expected: int) -> None:
    resp = await client.post(URL, json=order(f"E-auth-{expected}-{len(headers)}"), headers=headers)
    assert resp.status == expected
    if expected == 401:
        assert resp.content_type == "application/problem+json"
        assert "X-Api-Key" in (await resp.json())["detail"]
        assert "WWW-Authenticate" in resp.headers


async def test_every_bad_field_is_named(client: TestClient, settings: Settings) -> None:
    bad = order("E-bad", product="Internet Line!", scenario="reboot", bandwidth_mbps=-5)
    bad["customer"] = {"contact_phone": "call me"}
    bad["addresses"] = [{"detail": "somewhere"}]
    resp = await client.post(URL, json=bad, headers=ESOP_KEY)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {
        "product", "scenario", "bandwidth_mbps", "customer.name", "customer.contact_phone", "addresses.0.city"
    }
    # nothing reached Kafka
    assert await records_before_marker(settings, topics.inbound(settings.topic_prefix, "esop")) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b'{"external_order_id": ', "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b"\xff\xfe{}", "application/json", 400, "UTF-8"),
        (b"<order/>", "application/xml", 415, "application/json"),
        (b"{}", "text/plain", 415, "application/json"),
    ],
)
async def test_malformed_bodies_get_a_problem_answer(
    client: TestClient, body: bytes, content_type: str, status: int, needle: str
) -> None:
    resp = await client.post(URL, data=body, headers={**ESOP_KEY, "Content-Type": content_type})
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    assert needle in (await resp.json())["detail"]


async def test_body_over_the_limit_is_413_with_or_without_content_length(client: TestClient) -> None:
    big = order("E-big", extensions={"blob": "x" * 1_100_000})
    resp = await client.post(URL, data=json.dumps(big), headers={**ESOP_KEY, "Content-Type": "application/json"})
    assert resp.status == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    resp = await client.post(URL, data=chunks(), headers={**ESOP_KEY, "Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["title"] == "Payload Too Large"


async def test_unknown_partner_is_401_like_a_bad_key(client: TestClient) -> None:
    """Answered before anything names partners (issue 17): the same 401 as a wrong key."""
    resp = await client.post("/api/v1/partners/nobody/orders", json=order(), headers=ESOP_KEY)
    bad_key = await client.post(URL, json=order(), headers={"X-Api-Key": "not-the-key-0000"})
    assert resp.status == bad_key.status == 401
    assert resp.content_type == "application/problem+json"
    assert await resp.json() == await bad_key.json()


async def test_health_and_readiness(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200, body
    assert body["checks"]["kafka"]["ok"] and body["checks"]["mongo"]["ok"]


async def test_metrics_count_rejections_by_reason_and_envelopes_by_partner(
    client: TestClient, settings: Settings
) -> None:
    await client.post(URL, json=order("E-m"), headers={"X-Api-Key": "nope-nope-nope"})
    assert (await client.post(URL, json=order("E-m2"), headers=ESOP_KEY)).status == 202
    text = await (await client.get("/metrics")).text()
    assert 'hub_intake_requests_total{outcome="rejected_auth",partner="esop",protocol="rest"}' in text
    topic = topics.inbound(settings.topic_prefix, "esop")
    assert f'hub_envelopes_produced_total{{partner="esop",topic="{topic}"}} 1.0' in text
