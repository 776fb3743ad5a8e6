"""Issue 17, found by the outside probe: answers to malformed requests over the wire (raw bytes on a
socket, as an attacker sends them; the hub's web app on an aiohttp test server, real broker and
database)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import AdminToken, Settings

pytestmark = pytest.mark.integration
VIEWER = "viewer-token-for-tests-0001"


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    settings = settings.model_copy(update={"admin_tokens": [
        AdminToken(name="vera", role="viewer", token=SecretStr(VIEWER))]})
    return await aiohttp_client(build_web_app(Runtime(settings)))


async def raw(client: TestClient, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request written byte for byte; (status, headers, body)."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(head + b"Host: hub\r\nConnection: close\r\n"
                     + (f"Content-Length: {len(body)}\r\n".encode() if body else b"") + b"\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_part, _, payload = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, payload


ORDER = json.dumps({"external_order_id": "P-1", "product": "internet_line", "scenario": "open",
                    "customer": {"name": "Acme"},
                    "addresses": [{"city": "Hangzhou", "detail": "1 Wensan Rd"}]}).encode()


@pytest.mark.parametrize("key", [b"dev-esop-key-\xff\xfe", "dev-esop-ключ".encode(), b"\xc3("])
async def test_a_non_ascii_api_key_is_401(client: TestClient, key: bytes) -> None:
    status, headers, body = await raw(
        client, b"POST /api/v1/partners/esop/orders HTTP/1.1\r\nContent-Type: application/json\r\nX-Api-Key: "
        + key + b"\r\n", ORDER)
    assert status == 401, body
    assert headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("token", [b"viewer-token-\xff\xfe-0001", "токен-для-тестов-0001".encode()])
async def test_a_non_ascii_bearer_token_is_401(client: TestClient, token: bytes) -> None:
    status, headers, body = await raw(client, b"GET /admin/v1/dlq HTTP/1.1\r\nAuthorization: Bearer " + token + b"\r\n")
    assert status == 401, body
    assert headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("since", ["99999999999999d", "9999999999w", "1e400s"])
async def test_an_absurd_since_is_400(client: TestClient, since: str) -> None:
    for path in ("/admin/v1/dlq", "/admin/v1/orders", "/admin/v1/calls/stats", "/admin/v1/dlq/history"):
        resp = await client.get(f"{path}?since={since}", headers={"Authorization": f"Bearer {VIEWER}"})
        assert resp.status == 400, (path, await resp.text())
        assert resp.content_type == "application/problem+json"


async def test_no_answer_names_the_server_software(client: TestClient) -> None:
    for resp in (await client.get("/healthz"), await client.get("/readyz"), await client.get("/nowhere"),
                 await client.post("/api/v1/partners/esop/orders", json={})):
        assert resp.headers.get("Server") == "hub", (resp.url, resp.headers.get("Server"))


async def test_readyz_shows_no_addresses_or_paths_the_admin_api_does(client: TestClient,
                                                                    settings: Settings) -> None:
    """/readyz is unauthenticated: it showed the Kafka and MongoDB addresses and absolute config
    paths. Now whether each answers; the full picture is GET /admin/v1/readiness (viewer)."""
    resp = await client.get("/readyz")
    text = await resp.text()
    assert resp.status == 200, text
    assert "127.0.0.1" not in text and settings.kafka_bootstrap not in text and str(settings.config_dir) not in text
    assert '"/' not in text  # no absolute path anywhere
    body = json.loads(text)
    assert body["checks"]["kafka"]["ok"] is True and body["checks"]["mongo"]["ok"] is True
    assert (await client.get("/admin/v1/readiness")).status == 401
    full = await (await client.get("/admin/v1/readiness", headers={"Authorization": f"Bearer {VIEWER}"})).json()
    assert full["checks"]["kafka"]["url"] == settings.kafka_bootstrap


@pytest.mark.parametrize("path", ["/api/v1/partners/nobody/orders", "/api/v1/partners/nobody/callbacks"])
async def test_an_unknown_partner_is_answered_like_a_bad_key(client: TestClient, path: str) -> None:
    """It was a 404 before any auth check ('no REST intake for partner …'): partner names could be
    probed without a key. Now the same 401 as a known partner with a wrong key."""
    known = path.replace("nobody", "esop" if path.endswith("orders") else "resource")
    unknown = await client.post(path, json={"order_id": "x"}, headers={"X-Api-Key": "guess-0000-0000"})
    wrong = await client.post(known, json={"order_id": "x"}, headers={"X-Api-Key": "guess-0000-0000"})
    assert unknown.status == wrong.status == 401
    assert await unknown.json() == await wrong.json()
    assert "nobody" not in await unknown.text()


async def test_a_500000_deep_array_on_a_callback_is_400(client: TestClient) -> None:
    deep = b'{"order_id": "ord-1", "result": ' + b"[" * 500_000 + b"]" * 500_000 + b"}"
    status, headers, body = await raw(client, b"POST /api/v1/partners/resource/callbacks HTTP/1.1\r\n"
                                      b"Content-Type: application/json\r\nX-Api-Key: dev-resource-key-0001\r\n", deep)
    assert status == 400, body[:300]
    assert headers["content-type"].startswith("application/problem+json") and b"limit of 64 levels" in body
