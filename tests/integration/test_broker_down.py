"""Broker unreachable ⇒ 503, and nothing half-written: the partner may safely retry later."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.infra.process import wait_until
from app.infra.servers import KafkaServer
from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import Settings
from tests.conftest import free_port
from tests.integration.test_intake import ESOP_KEY, URL, order


@pytest.fixture
def own_broker(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, KafkaServer]]:
    """A broker only this test uses, so it can be stopped without hurting other tests."""
    mine = settings.model_copy(update={"home": tmp_path, "kafka_port": free_port(), "kafka_request_timeout_ms": 1500})
    server = KafkaServer(mine)
    server.process.start(server.argv())
    assert wait_until(server.answers, 15, 0.1), server.process.tail()
    yield mine, server
    server.process.stop()


async def test_broker_down_answers_503_and_records_nothing(own_broker: tuple[Settings, KafkaServer],
                                                           aiohttp_client: Any) -> None:
    mine, server = own_broker
    runtime = Runtime(mine)
    client = await aiohttp_client(build_web_app(runtime))
    assert (await client.post(URL, json=order("E-up"), headers=ESOP_KEY)).status == 202

    server.process.stop()
    started = time.monotonic()
    resp = await client.post(URL, json=order("E-down"), headers=ESOP_KEY)
    assert resp.status == 503
    assert resp.content_type == "application/problem+json"
    assert resp.headers["Retry-After"] == "5"
    assert "nothing was accepted" in (await resp.json())["detail"]
    assert time.monotonic() - started < 15, "a broker outage must not hang the partner"
    # no idempotency record: a retry after recovery is a fresh acceptance, not a "duplicate" of a lost order
    assert runtime.db is not None
    assert await runtime.db["intake_keys"].find_one({"_id": "order:esop:E-down:open"}) is None
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["kafka"]["ok"] is False

    # broker back (empty: tansu keeps topics in memory) → the partner's retry is accepted
    server.process.start(server.argv())
    assert wait_until(server.answers, 15, 0.1)
    resp = await client.post(URL, json=order("E-down"), headers=ESOP_KEY)
    assert resp.status == 202, await resp.text()
    assert resp.headers.get("Hub-Duplicate") is None
