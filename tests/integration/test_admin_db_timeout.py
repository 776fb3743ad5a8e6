"""The admin API when MongoDB does not answer in time: a 503 problem+json naming the database timeout,
with ``Retry-After`` — not a bare 500 (the orders list at 100,000 orders on SecantusDB answered 500
after ~30 s, issue 15). The timeout is the real server's: a ``failCommand`` failpoint makes
SecantusDB answer the hub's ``find`` with MaxTimeMSExpired (code 50), for the hub's client only. The
failpoint is a test-only command, so this module starts its own SecantusDB with it enabled (the shared
test server runs as ``hub run`` does, without)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pymongo import MongoClient

from app.infra.ephemeral import free_port
from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import AdminToken, Settings

pytestmark = pytest.mark.integration
VIEWER = {"Authorization": "Bearer viewer-token-for-tests-0001"}


@pytest.fixture(scope="module")
def test_mongo() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hub-failpoint-") as storage:
        server = subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
                                   "--storage-path", storage, "--log-level", "WARNING", "--enable-test-commands"])
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        try:
            probe: MongoClient[dict[str, Any]]
            with MongoClient(url, serverSelectionTimeoutMS=60_000) as probe:
                probe.admin.command("ping")
            yield url
        finally:
            server.terminate()
            server.wait(30)


@pytest.fixture
async def client(settings: Settings, test_mongo: str, aiohttp_client: Any) -> TestClient:
    settings = settings.model_copy(update={"mongo_url": test_mongo, "admin_tokens": [
        AdminToken(name="vera", role="viewer", token=SecretStr(VIEWER["Authorization"][7:]))]})
    return await aiohttp_client(build_web_app(Runtime(settings)))


def fail_finds(url: str, settings: Settings, mode: Any) -> None:
    admin: MongoClient[dict[str, Any]]
    with MongoClient(url) as admin:
        admin.admin.command({"configureFailPoint": "failCommand", "mode": mode,
                             "data": {"failCommands": ["find"], "errorCode": 50, "appName": settings.worker_id}})


async def test_orders_list_over_the_database_time_budget_is_a_503_problem(client: TestClient, settings: Settings,
                                                                           test_mongo: str) -> None:
    assert (await client.get("/admin/v1/orders", headers=VIEWER)).status == 200
    fail_finds(test_mongo, settings, "alwaysOn")
    try:
        answer = await client.get("/admin/v1/orders?status=waiting", headers=VIEWER)
        body = await answer.json(content_type=None)
    finally:
        fail_finds(test_mongo, settings, "off")
    assert answer.status == 503, body
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.headers["Retry-After"] == "5"
    assert body["status"] == 503 and "did not answer in time" in body["detail"]
    assert body["database_error"] == "ExecutionTimeout"
    assert (await client.get("/admin/v1/orders", headers=VIEWER)).status == 200
