"""Issue 17 §4: the SOAP sink (zeep over httpx) over HTTPS with the partner's private CA, through
the same ``connectors/tls.py`` context as the REST sink: verified with ``tls.ca_file``; another CA
is ``status: tls``, not retried. The ESOP simulator served over TLS on loopback."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.context import ConnectorContext
from connectors.soap.sink import SoapSink, SoapSinkConfig
from hub.envelope import Envelope
from hub.partners import load_partners
from hub.settings import PROJECT_ROOT, Settings
from simulators.server import build_app
from tests.tlscerts import Pki

pytestmark = pytest.mark.integration


@pytest.fixture
async def esop_https(tmp_path: Path) -> AsyncIterator[tuple[str, Pki]]:
    pki = Pki(tmp_path / "esop", "esop")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(build_app(PROJECT_ROOT / "config"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}/esop/soap", pki
    finally:
        await runner.cleanup()


async def close_report(settings: Settings, address: str, tls: dict[str, Any]) -> Any:
    esop = load_partners(PROJECT_ROOT / "config")["esop"]
    assert esop.outbound is not None
    config = SoapSinkConfig.model_validate({**esop.outbound.config, "address": address, "tls": tls})
    sink = SoapSink(config, ConnectorContext(settings=settings, route="esop"))
    await sink.start()
    try:
        return await sink.deliver(Envelope(
            type="call", source="hub", protocol="soap", correlation_id="ord-soap-tls", idempotency_key="k-soap-tls",
            payload={"operation": "close_report", "request": {
                "orderId": "ESOP-TLS-1", "hubOrderId": "ord-soap-tls", "resultCode": "1", "resultDesc": "ok",
                "finishTime": "1700000696"}}))
    finally:
        await sink.stop()


async def test_soap_call_verified_with_the_partners_ca_and_refused_with_another(
        settings: Settings, esop_https: tuple[str, Pki], tmp_path: Path) -> None:
    address, pki = esop_https
    ok = await close_report(settings, address, {"ca_file": str(pki.ca_file)})
    assert ok.ok, ok.error
    wrong = await close_report(settings, address, {"ca_file": str(Pki(tmp_path / "other", "other").ca_file)})
    assert not wrong.ok and not wrong.retryable and wrong.status == "tls", wrong.error
    assert "certificate verify failed" in (wrong.error or "")
