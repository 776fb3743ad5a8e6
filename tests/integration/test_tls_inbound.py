"""Issue 17 §4-5 against the hub served as ``hub run`` serves it (``app.web.serve``, real broker and
database): HTTPS from HUB_HTTP_TLS_CERT/KEY, client certificates from HUB_HTTP_TLS_CLIENT_CA, the
``kind: client_cert`` partner auth on the intake and the callbacks, the TLS handshake bounded.
Certificates are made here (tests/tlscerts.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from app.runtime import Runtime
from app.web import build_web_app, serve
from hub.settings import Settings
from tests.integration.test_intake import URL, order
from tests.integration.test_partner_hmac_rate import _config
from tests.tlscerts import Pki

pytestmark = pytest.mark.integration

CALLBACKS = "/api/v1/partners/esop/callbacks"
CERT_AUTH = "    auth:\n      kind: client_cert\n      subjects: [esop-client]\n"


def _rejected(outcome: str) -> float:
    return REGISTRY.get_sample_value("hub_intake_requests_total",
                                     {"partner": "esop", "protocol": "rest", "outcome": outcome}) or 0.0


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def _tls(settings: Settings, pki: Pki, *, client_ca: bool) -> Settings:
    server = pki.server()
    return settings.model_copy(update={"http_tls_cert": server.cert, "http_tls_key": server.key,
                                       "http_tls_client_ca": pki.ca_file if client_ca else None,
                                       "http_header_timeout_s": 2.0})


async def _served(settings: Settings) -> AsyncIterator[str]:
    runner = await serve(await asyncio.to_thread(lambda: build_web_app(Runtime(settings))), settings, port=0)
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def https(settings: Settings, pki: Pki) -> AsyncIterator[str]:
    """The shipped configuration (esop: API key) over HTTPS, no client CA."""
    async for base in _served(await asyncio.to_thread(lambda: _tls(settings, pki, client_ca=False))):
        yield base


@pytest.fixture
async def mtls(settings: Settings, pki: Pki, tmp_path: Path) -> AsyncIterator[str]:
    """esop authenticated by its client certificate (CN esop-client), client CA configured."""
    # certificates made and the config copied in a thread (over 100 ms of CPU on the loop under load)
    configured = await asyncio.to_thread(lambda: _config(_tls(settings, pki, client_ca=True), tmp_path, CERT_AUTH))
    async for base in _served(configured):
        yield base


async def post(base: str, path: str, body: Any, context: ssl.SSLContext | bool,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(base + path, json=body, headers=headers or {}) as resp:
            text = await resp.text()
            return resp.status, dict(resp.headers), json.loads(text) if text else None


async def test_https_intake_is_accepted_and_plain_http_is_not_served(https: str, pki: Pki) -> None:
    status, _, answer = await post(https, URL, order("E-TLS1"), pki.client_context(),
                                   {"X-Api-Key": "dev-esop-key-0001"})
    assert status == 202, answer
    with pytest.raises(aiohttp.ClientError):  # the port speaks TLS only
        await post(https.replace("https://", "http://"), URL, order("E-TLS2"), False,
                   {"X-Api-Key": "dev-esop-key-0001"})
    with pytest.raises(aiohttp.ClientConnectorCertificateError):  # a client that trusts another CA
        await post(https, URL, order("E-TLS3"), Pki(pki.folder / "other", "other").client_context(),
                   {"X-Api-Key": "dev-esop-key-0001"})


async def test_client_certificate_partner_auth(mtls: str, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connectors.rest.source")
    esop = pki.client("esop-client")
    status, _, answer = await post(mtls, URL, order("E-CC1"), pki.client_context(present=esop))
    assert status == 202, answer

    before = _rejected("rejected_auth")
    status, headers, answer = await post(mtls, URL, order("E-CC2"), pki.client_context(),
                                         {"X-Api-Key": "dev-esop-key-0001"})  # no certificate: a key is not enough
    assert status == 401 and headers["Content-Type"].startswith("application/problem+json"), answer
    assert headers["WWW-Authenticate"].startswith("TLS-Client-Certificate")
    assert "no verified client certificate" in answer["detail"]

    stranger = pki.client("group-client")  # the same CA, another name
    status, _, answer = await post(mtls, URL, order("E-CC3"), pki.client_context(present=stranger))
    assert status == 401 and "subject name" in answer["detail"], answer
    assert _rejected("rejected_auth") == before + 2
    assert any("group-client" in r.getMessage() and "401" in r.getMessage() for r in caplog.records)

    foreign = Pki(pki.folder / "foreign", "foreign").client("esop-client")  # the right name from another CA
    with pytest.raises(aiohttp.ClientError):  # refused in the handshake: it does not chain to the client CA
        await post(mtls, URL, order("E-CC4"), pki.client_context(present=foreign))


async def test_callbacks_of_a_client_certificate_partner(mtls: str, pki: Pki) -> None:
    body = {"order_id": "ord-nobody", "status": "ok"}
    status, _, answer = await post(mtls, CALLBACKS, body, pki.client_context(present=pki.client("esop-client")))
    assert status == 403, answer  # past authentication: that order is not waiting for esop
    status, _, answer = await post(mtls, CALLBACKS, body, pki.client_context(), {"X-Api-Key": "dev-esop-key-0001"})
    assert status == 401 and "client certificate" in answer["detail"], answer


async def test_a_client_that_never_completes_the_handshake_is_closed_at_the_head_bound(https: str) -> None:
    port = int(https.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing (asyncio's default: 60 s)
    await writer.drain()
    try:
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    finally:
        writer.close()
    assert loop.time() - started < 2.0 + 3.0  # HUB_HTTP_HEADER_TIMEOUT_S here is 2 s; slack for a busy machine


