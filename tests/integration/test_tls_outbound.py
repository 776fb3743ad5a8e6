"""Issue 17 §4: the REST sink calls a partner over HTTPS that has its own private CA (a real aiohttp
server on loopback; certificates made here, tests/tlscerts.py): verified against the partner's
``tls.ca_file`` only; the wrong CA, the wrong name or a refused client certificate is a delivery
failure ``status: tls``, not retried; mutual TLS presents the hub's certificate."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.context import ConnectorContext
from connectors.rest.sink import RestSink, RestSinkConfig
from hub.envelope import Envelope
from hub.settings import Settings
from tests.tlscerts import Pki

pytestmark = pytest.mark.integration

Serve = Callable[..., Any]


@pytest.fixture
def partner_ca(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "partner", "partner")


@pytest.fixture
async def partner(partner_ca: Pki) -> AsyncIterator[Serve]:
    """``await partner(names=…, client_ca=…)`` → the base URL of an HTTPS partner answering
    ``POST /api/op`` with ``{"code": "0", "peer": <client certificate CN or None>}``."""
    runners: list[web.AppRunner] = []

    async def op(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        cn = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), None)
        return web.json_response({"code": "0", "peer": cn})

    async def start(names: tuple[str, ...] = ("127.0.0.1",), client_ca: Path | None = None,
                    tls12: bool = False) -> str:
        issued = partner_ca.ca.issue_cert(*names)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if tls12:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        issued.configure_cert(context)
        if client_ca is not None:
            context.load_verify_locations(cafile=str(client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
        app = web.Application()
        app.router.add_post("/api/op", op)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        return f"https://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def envelope() -> Envelope:
    return Envelope(type="call", source="hub", protocol="rest", correlation_id="ord-tls-1",
                    idempotency_key="call:ord-tls-1:op", payload={"operation": "op", "request": {"a": 1}})


async def call(settings: Settings, base_url: str, tls: dict[str, Any] | None) -> Any:
    config = RestSinkConfig.model_validate({
        "base_url": base_url, "operations": {"op": {"path": "/api/op", "success": {"field": "code", "equals": "0"}}},
        **({"tls": tls} if tls is not None else {})})
    sink = RestSink(config, ConnectorContext(settings=settings, route="resource"))
    await sink.start()
    try:
        return await sink.deliver(envelope())
    finally:
        await sink.stop()


async def test_verified_against_the_partners_ca_and_the_wrong_ca_is_a_tls_failure_not_retried(
        settings: Settings, partner: Serve, partner_ca: Pki, tmp_path: Path) -> None:
    base = await partner()
    ok = await call(settings, base, {"ca_file": str(partner_ca.ca_file)})
    assert ok.ok, ok.error

    other = Pki(tmp_path / "other", "other")
    wrong = await call(settings, base, {"ca_file": str(other.ca_file)})
    assert not wrong.ok and not wrong.retryable and wrong.status == "tls"
    assert "certificate verify failed" in (wrong.error or ""), wrong.error

    system = await call(settings, base, None)  # no tls block: the system store, which knows no private CA
    assert not system.ok and not system.retryable and system.status == "tls"


async def test_server_hostname_checks_the_name_the_certificate_carries(
        settings: Settings, partner: Serve, partner_ca: Pki) -> None:
    base = await partner(names=("resource.partner.example",))  # reached by IP, certified by name
    mismatch = await call(settings, base, {"ca_file": str(partner_ca.ca_file)})
    assert mismatch.status == "tls" and not mismatch.retryable, mismatch.error
    named = await call(settings, base, {"ca_file": str(partner_ca.ca_file),
                                        "server_hostname": "resource.partner.example"})
    assert named.ok, named.error


async def test_mutual_tls_presents_the_hubs_client_certificate(
        settings: Settings, partner: Serve, partner_ca: Pki, tmp_path: Path) -> None:
    ours = Pki(tmp_path / "hub", "hub")  # the CA the partner trusts for its clients
    base = await partner(client_ca=ours.ca_file)
    # without a client certificate the partner refuses: its alert races the TCP reset of what the
    # client already sent (TLS 1.3 and 1.2 alike, seen both ways), so the hub may only see a reset
    # connection — a network fault to it, retried (docs/security.md); never a success
    for base_url in (base, await partner(client_ca=ours.ca_file, tls12=True)):
        refused = await call(settings, base_url, {"ca_file": str(partner_ca.ca_file)})
        assert not refused.ok and refused.status in ("tls", "error"), refused.error
    mine = ours.client("hub-to-resource")
    mutual = await call(settings, base, {"ca_file": str(partner_ca.ca_file), "client_cert": str(mine.cert),
                                         "client_key": str(mine.key)})
    assert mutual.ok, mutual.error
    assert mutual.response["body"]["peer"] == "hub-to-resource"


async def test_insecure_skip_verify_is_refused_in_production(settings: Settings, partner: Serve) -> None:
    from hub.errors import ConfigError

    base = await partner()
    lab = await call(settings, base, {"insecure_skip_verify": True})  # outside production: allowed, logged
    assert lab.ok, lab.error
    with pytest.raises(ConfigError, match="insecure_skip_verify"):
        await call(settings.model_copy(update={"profile": "production"}), base, {"insecure_skip_verify": True})
