"""Issue 8 item 4: identical orders posted concurrently make exactly one envelope, whatever the
concurrency and however many hub processes take them (the idempotency key is an insert-first
claim in MongoDB, coalesced in-process first)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.infra.process import wait_until
from app.infra.servers import KafkaServer
from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub import topics
from hub.order import order_id_for
from hub.settings import Settings
from tests.integration.test_broker_down import own_broker  # noqa: F401  (fixture)
from tests.integration.test_intake import ESOP_KEY, URL, order
from tests.support import envelopes, read_topic, records_before_marker, topic_envelopes


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(build_web_app(Runtime(settings)))


async def _burst(clients: list[TestClient], ext: str, n: int) -> list[tuple[int, dict[str, Any], bool]]:
    async def one(i: int) -> tuple[int, dict[str, Any], bool]:
        resp = await clients[i % len(clients)].post(URL, json=order(ext), headers=ESOP_KEY)
        return resp.status, await resp.json(), resp.headers.get("Hub-Duplicate") == "true"

    return await asyncio.gather(*(one(i) for i in range(n)))


async def test_ten_parallel_identical_orders_make_exactly_one_envelope(client: TestClient, settings: Settings) -> None:
    answers = await _burst([client], "E-ten", 10)
    assert [status for status, _, _ in answers] == [202] * 10
    assert len({(b["order_id"], b["envelope_id"]) for _, b, _ in answers}) == 1
    assert sum(1 for _, _, dup in answers if not dup) == 1, "one first answer, nine duplicates"

    records = await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1, wait=6)
    (env,) = envelopes(records)
    assert env.id == answers[0][1]["envelope_id"]


async def test_two_hub_processes_racing_on_one_key_make_one_envelope(settings: Settings, aiohttp_client: Any) -> None:
    """Two runtimes (two hub processes) on one database: only the MongoDB claim can arbitrate."""
    a = await aiohttp_client(build_web_app(Runtime(settings)))
    b = await aiohttp_client(build_web_app(Runtime(settings)))
    for ext in ("E-two-1", "E-two-2", "E-two-3"):
        answers = await _burst([a, b], ext, 10)
        assert [status for status, _, _ in answers] == [202] * 10, answers
        assert len({b["envelope_id"] for _, b, _ in answers}) == 1
    records = await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), expect=3, wait=6)
    assert sorted(e.idempotency_key for e in envelopes(records)) == [
        "order:esop:E-two-1:open", "order:esop:E-two-2:open", "order:esop:E-two-3:open"]


async def test_a_claim_whose_holder_died_is_taken_over(client: TestClient, settings: Settings) -> None:
    runtime = client.app[RUNTIME]
    assert runtime.db is not None
    key = "order:esop:E-orphan:open"
    stale = datetime.now(UTC) - timedelta(seconds=60)
    await runtime.db["intake_keys"].insert_one(
        {"_id": f"claim:{key}", "envelope_id": "never-produced", "claimed_at": stale, "holder": "a-dead-process"})

    resp = await client.post(URL, json=order("E-orphan"), headers=ESOP_KEY)
    assert resp.status == 202, await resp.text()
    assert resp.headers.get("Hub-Duplicate") is None
    answer = await resp.json()
    assert answer["envelope_id"] != "never-produced"
    (env,) = await topic_envelopes(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    assert env.id == answer["envelope_id"]
    record = await runtime.db["intake_keys"].find_one({"_id": key})
    assert record["state"] == "accepted" and record["envelope"]["id"] == env.id
    assert (await runtime.db["intake_keys"].find_one({"_id": f"claim:{key}"}))["holder"] != "a-dead-process"


async def test_a_live_claim_of_another_process_is_waited_for_not_duplicated(
    client: TestClient, settings: Settings
) -> None:
    """A fresh pending claim (another process is producing) is neither taken over nor produced
    again: the delivery waits for it and answers 503 (retry) if it never completes."""
    runtime = client.app[RUNTIME]
    assert runtime.db is not None
    runtime.intake._wait_s = 0.5  # keep the test short; the default waits 10 s
    key = "order:esop:E-busy:open"
    now = datetime.now(UTC)
    await runtime.db["intake_keys"].insert_one(
        {"_id": f"claim:{key}", "envelope_id": "in-progress", "claimed_at": now, "holder": "another-process"})
    resp = await client.post(URL, json=order("E-busy"), headers=ESOP_KEY)
    assert resp.status == 503
    # the other process records its acceptance: the waiting delivery's retry gets its answer
    await runtime.db["intake_keys"].insert_one({
        "_id": key, "order_id": order_id_for("esop", "E-busy", "open"), "envelope_id": "in-progress",
        "state": "accepted", "created_at": now})
    resp = await client.post(URL, json=order("E-busy"), headers=ESOP_KEY)
    assert resp.status == 202 and resp.headers.get("Hub-Duplicate") == "true"
    assert (await resp.json())["envelope_id"] == "in-progress"
    assert await records_before_marker(settings, topics.inbound(settings.topic_prefix, "esop")) == []


async def test_a_failed_produce_releases_the_claim_so_the_retry_is_accepted(
    own_broker: tuple[Settings, KafkaServer], aiohttp_client: Any  # noqa: F811
) -> None:
    mine, server = own_broker
    client = await aiohttp_client(build_web_app(Runtime(mine)))
    runtime = client.app[RUNTIME]
    server.process.stop()
    resp = await client.post(URL, json=order("E-released"), headers=ESOP_KEY)
    assert resp.status == 503
    key = "order:esop:E-released:open"
    assert await runtime.db["intake_keys"].find_one({"_id": f"claim:{key}"}) is None  # nothing recorded
    assert await runtime.db["intake_keys"].find_one({"_id": key}) is None
    server.process.start(server.argv())
    assert wait_until(server.answers, 15, 0.1)
    runtime.intake._wait_s = 0.5  # a claim left behind would make the retry wait, then 503
    resp = await client.post(URL, json=order("E-released"), headers=ESOP_KEY)
    assert resp.status == 202, await resp.text()
    assert resp.headers.get("Hub-Duplicate") is None
