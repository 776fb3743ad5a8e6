"""Issue 8 item 8: MongoDB down ⇒ intake answers 503 fast. Before the fix every answer paid the 5 s
server-selection timeout once or twice (5.1–10.5 s); now the database circuit (hub/db.py DbHealth)
answers at once after the first failure, and closes again when a background ping succeeds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.infra.process import wait_until
from app.infra.servers import MongoServer
from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import Settings
from tests.conftest import free_port
from tests.integration.test_intake import ESOP_KEY, URL, order
from tests.support import eventually

pytestmark = pytest.mark.integration
FAST = 1.0  # the bound for "once the database is known down"


@pytest.fixture
def own_mongo(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, MongoServer]]:
    """A SecantusDB only this test uses, so it can be stopped without hurting other tests."""
    mine = settings.model_copy(update={"home": tmp_path, "mongo_port": free_port()})
    server = MongoServer(mine)
    server.prepare()
    server.process.start(server.argv())
    assert wait_until(server.answers, 20, 0.1), server.process.tail()
    yield mine, server
    server.process.stop()


async def timed_post(client: Any, ext: str) -> tuple[Any, float]:
    started = time.monotonic()
    resp = await client.post(URL, json=order(ext), headers=ESOP_KEY)
    await resp.read()
    return resp, time.monotonic() - started


async def test_mongo_down_answers_503_fast_and_accepts_again_when_back(
    own_mongo: tuple[Settings, MongoServer], aiohttp_client: Any
) -> None:
    mine, server = own_mongo
    client = await aiohttp_client(build_web_app(Runtime(mine)))
    resp, _ = await timed_post(client, "E-M-up")
    assert resp.status == 202, await resp.text()

    server.process.stop()  # the database goes away while the hub runs
    first, first_s = await timed_post(client, "E-M-0")
    assert first.status == 503, await first.text()
    assert first.headers["Retry-After"]
    assert first_s < 3.5, f"first detection took {first_s:.2f}s (the 5 s server selection is not bounded)"

    answers = [await timed_post(client, f"E-M-{i}") for i in range(1, 6)]
    for resp, seconds in answers:
        assert resp.status == 503
        assert resp.content_type == "application/problem+json"
        assert resp.headers["Retry-After"]
        assert seconds < FAST, f"503 took {seconds:.2f}s once the database was known down"

    started = time.monotonic()
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 503 and body["checks"]["mongo"]["ok"] is False
    assert body["checks"]["mongo"]["circuit"] == "open", body
    assert time.monotonic() - started < FAST
    metrics = await (await client.get("/metrics")).text()
    assert 'hub_dependency_up{dependency="mongo"} 0.0' in metrics

    server.process.start(server.argv())  # back (same data folder): the circuit closes by itself
    assert wait_until(server.answers, 20, 0.1), server.process.tail()

    async def accepted() -> bool:
        resp, _ = await timed_post(client, "E-M-back")
        return resp.status == 202

    await eventually(accepted, timeout=15, interval=0.3)
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"]["mongo"]["circuit"] == "closed"
