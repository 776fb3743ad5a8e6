"""SOAP reads the partner's crypto contract, and its intake has a rate and a size limit — against the
real app, broker and database. The partner side of every crypto exchange here uses only
pycryptodome and lxml (an independent implementation): it seals the fields of a request it sends
the hub, and opens the fields of a request the hub's SOAP sink sends it."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree
from prometheus_client import REGISTRY

from app.delivery import build_sink
from app.runtime import Runtime
from app.web import build_web_app
from connectors.context import ConnectorContext
from hub import topics
from hub.envelope import Envelope
from hub.partners import load_partners
from hub.settings import Settings
from tests.partner_crypto import KEYS, oaep, seal, unseal
from tests.support import read_topic, topic_envelopes

pytestmark = pytest.mark.integration
URL = "/soap/esop"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
CNS = "http://esop.example.com/ws/crypto"  # the partner's namespace for the key's header elements
API_KEY = {"X-Api-Key": "dev-esop-key-0001"}


def _crypto_block(via: str, fields: str) -> str:
    carry = (f"{{via: soap_header, key: encryptedKey, iv: iv, key_id: keyId, namespace: '{CNS}'}}"
             if via == "soap_header" else "{via: header}")
    return f"""crypto:
  cipher: aes
  mode: gcm
  key_wrap: {{scheme: rsa-oaep, hash: sha256, mgf1_hash: sha1}}
  carry: {carry}
  partner_keys: [{{id: partner-2026a, file: {KEYS / 'test-partner-2026a.pub.pem'}}}]
  our_keys:
    - {{id: hub-2026b, file: {KEYS / 'test-hub-2026b.key.pem'}}}
    - {{id: hub-2026a, file: {KEYS / 'test-hub-2026a.key.pem'}}}
{fields}"""


def _config(settings: Settings, tmp_path: Path, partner_extra: str = "", rest_extra: str = "") -> Path:
    """A copy of the shipped config with ``partner_extra`` appended to esop.yaml and ``rest_extra``
    under its ``inbound.rest``. Called in a thread: copying ~200 files took 110-150 ms of CPU on the
    loop with the suite's four workers on 2 cores (the loop check failed)."""
    config = tmp_path / "config"
    shutil.copytree(settings.config_dir, config)
    esop = config / "partners" / "esop.yaml"
    text = esop.read_text(encoding="utf-8")
    if rest_extra:
        text = text.replace("  rest:\n", f"  rest:\n{rest_extra}", 1)
    esop.write_text(text + partner_extra, encoding="utf-8")
    return config


async def _client(settings: Settings, aiohttp_client: Any, config: Path, **update: Any) -> TestClient:
    """The runtime reads every partner file and the app renders the WSDL: CPU, off the loop (129 ms
    on it failed the loop check with four test workers on 2 cores)."""
    s = settings.model_copy(update={"config_dir": config, **update})
    return await aiohttp_client(await asyncio.to_thread(lambda: build_web_app(Runtime(s))))


def _order(ext: str, name: str, phone: str, bandwidth: str) -> str:
    return (f'<o:receiveWorkOrder xmlns:o="http://hub.example.com/ws/orders"><o:orderNo>{ext}</o:orderNo>'
            "<o:productCode>internet_line</o:productCode><o:scenarioCode>01</o:scenarioCode>"
            f"<o:customer><o:name>{name}</o:name><o:contactPhone>{phone}</o:contactPhone></o:customer>"
            "<o:address><o:city>宁波</o:city><o:detail>中山路8号</o:detail></o:address>"
            f"<o:bandwidthMbps>{bandwidth}</o:bandwidthMbps></o:receiveWorkOrder>")


def _envelope(body: str, header: str = "") -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP}"><s:Header>{header}</s:Header><s:Body>{body}</s:Body>'
            "</s:Envelope>").encode()


def _key_header(wrapped: str, key_id: str) -> str:
    return f'<c:encryptedKey xmlns:c="{CNS}">{wrapped}</c:encryptedKey><c:keyId xmlns:c="{CNS}">{key_id}</c:keyId>'


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("hub_intake_requests_total",
                                     {"partner": "esop", "protocol": "soap", "outcome": outcome}) or 0.0


FIELDS = ["customer.name", "customer.contactPhone", "bandwidthMbps"]  # the partner's element names


@pytest.mark.parametrize("via", ["soap_header", "header"])
async def test_soap_intake_decrypts_declared_fields_before_the_xsd_validates(
        settings: Settings, tmp_path: Path, aiohttp_client: Any, via: str, caplog: pytest.LogCaptureFixture) -> None:
    """The partner (pycryptodome) seals three fields under a fresh AES-256-GCM key and wraps it with our
    previous RSA key (it has not rotated yet). ``bandwidthMbps`` is an ``xsd:positiveInteger``: sealed,
    it is base64 text, so the XSD would refuse it unless the hub decrypted before validating. The key
    travels in SOAP header elements (``via: soap_header``) or HTTP headers (``via: header``)."""
    config = await asyncio.to_thread(_config, settings, tmp_path, _crypto_block(via, f"  inbound_fields: {FIELDS}\n"))
    client = await _client(settings, aiohttp_client, config)
    key = os.urandom(32)
    wrapped = base64.b64encode(oaep("test-hub-2026a.pub.pem").encrypt(key)).decode()
    carried_http = {"X-Encrypted-Key": wrapped, "X-Key-Id": "hub-2026a"} if via == "header" else {}
    header = _key_header(wrapped, "hub-2026a") if via == "soap_header" else ""
    sealed = _order("S-C1", seal(key, "宁波某某贸易公司"), seal(key, "13900000001"), seal(key, "300"))
    resp = await client.post(URL, data=_envelope(sealed, header),
                             headers={"Content-Type": "text/xml", **API_KEY, **carried_http})
    assert resp.status == 200, await resp.text()
    (env,) = await topic_envelopes(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    assert env.payload["customer"] == {"name": "宁波某某贸易公司", "contact_phone": "13900000001"}
    assert env.payload["bandwidth_mbps"] == 300
    assert not any(h.lower() in ("x-encrypted-key", "encryptedkey") for h in env.headers)

    # refusals: a fault naming the field, never its value; logged and counted as rejected_invalid
    before = _count("rejected_invalid")
    clear = _order("S-C2", "宁波某某贸易公司", "13900000002", "300")
    resp = await client.post(URL, data=_envelope(clear), headers={"Content-Type": "text/xml", **API_KEY})
    text = await resp.text()
    assert resp.status == 500 and "<faultcode>soap:Client</faultcode>" in text and "without the wrapped key" in text
    tampered = _order("S-C3", seal(key, "宁波某某贸易公司"), seal(os.urandom(32), "13900000003"), seal(key, "300"))
    with caplog.at_level(logging.INFO):
        resp = await client.post(URL, data=_envelope(tampered, header),
                                 headers={"Content-Type": "text/xml", **API_KEY, **carried_http})
    text = await resp.text()
    assert resp.status == 500 and "<field>customer.contactPhone</field>" in text, text
    assert "13900000003" not in text and "13900000003" not in caplog.text
    assert "customer.contactPhone does not decrypt" in caplog.text
    bad_number = _order("S-C4", seal(key, "某公司"), seal(key, "13900000004"), seal(key, "-5"))
    resp = await client.post(URL, data=_envelope(bad_number, header),
                             headers={"Content-Type": "text/xml", **API_KEY, **carried_http})
    text = await resp.text()  # decrypted, then refused by the XSD, which would quote '-5': not shown
    assert resp.status == 500 and "bandwidthMbps: invalid value (an encrypted field" in text and "-5" not in text
    assert _count("rejected_invalid") == before + 3
    assert len(await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0)) == 1


async def _soap_partner(answer_key: str, seen: list[dict[str, Any]]) -> TestServer:
    """ESOP's notifyOrderResult, written with lxml and pycryptodome only: it unwraps the key from the
    SOAP header, opens ``resultDesc`` and answers ``parameterValue`` sealed under the request's key
    (``answer_key="request"``) or under another one."""
    async def handle(request: web.Request) -> web.Response:
        root = etree.fromstring(await request.read())
        header = root.find(f"{{{SOAP}}}Header")
        wrapped = header.findtext(f"{{{CNS}}}encryptedKey")
        key = oaep("test-partner-2026a.key.pem").decrypt(base64.b64decode(wrapped))
        body = root.find(f"{{{SOAP}}}Body")[0]
        ns = "{http://esop.example.com/ws}"
        seen.append({"key_id": header.findtext(f"{{{CNS}}}keyId"), "order": body.findtext(f"{ns}orderId"),
                     "sealed": body.findtext(f"{ns}resultDesc"),
                     "clear": unseal(key, body.findtext(f"{ns}resultDesc") or "")})
        sealing = key if answer_key == "request" else os.urandom(32)
        answer = (f'<s:Envelope xmlns:s="{SOAP}"><s:Body><e:notifyOrderResultResponse xmlns:e="http://esop.example'
                  f'.com/ws"><e:checkResult>1</e:checkResult><e:parameterValue>{seal(sealing, "已归档 张三")}'
                  "</e:parameterValue></e:notifyOrderResultResponse></s:Body></s:Envelope>")
        return web.Response(text=answer, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/esop/soap", handle)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.mark.parametrize("answer_key", ["request", "another"])
async def test_soap_sink_encrypts_request_fields_and_decrypts_the_answer_with_the_requests_key(
        settings: Settings, tmp_path: Path, answer_key: str) -> None:
    seen: list[dict[str, Any]] = []
    server = await _soap_partner(answer_key, seen)
    try:
        config = await asyncio.to_thread(_config, settings, tmp_path, _crypto_block("soap_header", """  fields:
    close_report: {request: [resultDesc], response: [parameterValue]}
"""))
        esop = config / "partners" / "esop.yaml"
        esop.write_text(esop.read_text(encoding="utf-8").replace(
            '"${HUB_SIM_URL:-http://127.0.0.1:18800}/esop/soap"', f'"{server.make_url("/esop/soap")}"'),
            encoding="utf-8")
        sink = build_sink(load_partners(config)["esop"], ConnectorContext(settings.model_copy(
            update={"config_dir": config})))
        await sink.start()
        try:
            outcome = await sink.deliver(Envelope(
                type="call.request", source="hub", protocol="internal", correlation_id="ord-s1",
                idempotency_key="call:ord-s1:close_report",
                payload={"operation": "close_report", "request": {
                    "orderId": "E-S1", "hubOrderId": "ord-s1", "resultCode": "0", "resultDesc": "客户 张三 已开通",
                    "finishTime": "2026-12-02T01:00:00Z"}}))
        finally:
            await sink.stop()
    finally:
        await server.close()
    (call,) = seen
    assert call["key_id"] == "partner-2026a" and call["order"] == "E-S1"  # only the declared field is sealed
    assert call["clear"] == "客户 张三 已开通" and "张三" not in (call["sealed"] or "")
    assert "张三" not in str(outcome.details)
    if answer_key == "request":
        assert outcome.ok, outcome.error
        assert outcome.response == {"checkResult": 1, "parameterValue": "已归档 张三"}
    else:  # the partner's answer, not ours: it will not decrypt next time either
        assert not outcome.ok and not outcome.retryable
        assert "answer does not decrypt" in (outcome.error or "") and "parameterValue" in (outcome.error or "")


async def test_soap_intake_over_the_partners_rate_is_429_with_retry_after_and_a_fault(
        settings: Settings, tmp_path: Path, aiohttp_client: Any) -> None:
    """The partner's ``inbound.rest.rate_limit`` applies to its SOAP route too (the route file sets
    none); checked after authentication, so a stranger's calls do not spend it."""
    config = await asyncio.to_thread(_config, settings, tmp_path,
                                     rest_extra="    rate_limit: {per_second: 0.2, burst: 2}\n")
    client = await _client(settings, aiohttp_client, config)
    stranger = await client.post(URL, data=_envelope(_order("S-R0", "某", "1", "10")),
                                 headers={"Content-Type": "text/xml", "X-Api-Key": "wrong-key-0000"})
    assert stranger.status == 500 and "authentication" in await stranger.text()
    for n in (1, 2):
        ok = await client.post(URL, data=_envelope(_order(f"S-R{n}", "某公司", "13900000000", "10")),
                               headers={"Content-Type": "text/xml", **API_KEY})
        assert ok.status == 200, await ok.text()
    before = _count("rejected_rate")
    over = await client.post(URL, data=_envelope(_order("S-R3", "某公司", "13900000000", "10")),
                             headers={"Content-Type": "text/xml", **API_KEY})
    text = await over.text()
    assert over.status == 429 and over.headers["Retry-After"] == "5"
    assert "<faultcode>soap:Server</faultcode>" in text and "over 0.2 requests/s (burst 2)" in text
    assert _count("rejected_rate") == before + 1
    records = await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), expect=2, wait=2.0)
    assert len(records) == 2


async def test_a_partners_rest_and_soap_intakes_share_one_rate_bucket(settings: Settings, tmp_path: Path,
                                                                     aiohttp_client: Any) -> None:
    """ESOP has a REST and a SOAP intake: its rate is the partner's, not each route's (with a bucket
    per route it could send twice its rate, half over each; issue 17 "rate limit per partner")."""
    config = await asyncio.to_thread(_config, settings, tmp_path,
                                     rest_extra="    rate_limit: {per_second: 0.2, burst: 1}\n")
    client = await _client(settings, aiohttp_client, config)
    order = {"external_order_id": "E-B1", "product": "internet_line", "scenario": "open",
             "customer": {"name": "某公司"}, "addresses": [{"city": "杭州", "detail": "文三路1号"}]}
    first = await client.post("/api/v1/partners/esop/orders", json=order, headers=API_KEY)
    assert first.status == 202, await first.text()
    over = await client.post(URL, data=_envelope(_order("S-B2", "某公司", "13900000000", "10")),
                             headers={"Content-Type": "text/xml", **API_KEY})
    assert over.status == 429 and over.headers["Retry-After"] == "5", await over.text()


@pytest.mark.parametrize("where", ["HUB_INTAKE_MAX_BODY_BYTES", "route max_body_bytes"])
async def test_soap_body_over_the_limit_is_413_with_a_fault(settings: Settings, tmp_path: Path,
                                                           aiohttp_client: Any, where: str) -> None:
    """It was a 500 fault (and the route's own 1 MiB default ignored HUB_INTAKE_MAX_BODY_BYTES)."""
    config = await asyncio.to_thread(_config, settings, tmp_path)
    update: dict[str, Any] = {}
    if where == "HUB_INTAKE_MAX_BODY_BYTES":
        update["intake_max_body_bytes"] = 4096
    else:
        route = config / "routes" / "esop-soap-orders.yaml"
        route.write_text(route.read_text(encoding="utf-8").replace(
            "  partner: esop\n", "  partner: esop\n  max_body_bytes: 4096\n", 1), encoding="utf-8")
    client = await _client(settings, aiohttp_client, config, **update)
    small = await client.post(URL, data=_envelope(_order("S-L1", "某公司", "13900000000", "10")),
                              headers={"Content-Type": "text/xml", **API_KEY})
    assert small.status == 200, await small.text()
    before = _count("rejected_too_large")
    big = _envelope(_order("S-L2", "某" * 3000, "13900000000", "10"))
    assert len(big) > 4096
    for chunked in (False, True):  # a declared Content-Length and a body that only turns out too large
        data: Any = big
        if chunked:
            async def gen() -> Any:
                yield big
            data = gen()
        resp = await client.post(URL, data=data, headers={"Content-Type": "text/xml", **API_KEY})
        text = await resp.text()
        assert resp.status == 413 and "<faultcode>soap:Client</faultcode>" in text
        assert "request exceeds the limit of 4096 bytes" in text
    assert _count("rejected_too_large") == before + 2


async def test_a_rest_route_file_gets_the_partners_rate_limit_too(settings: Settings, tmp_path: Path,
                                                                  aiohttp_client: Any) -> None:
    """The same hand-over as the SOAP route's: the shipped esop-rest-orders.yaml sets no rate_limit, so
    the partner's ``inbound.rest.rate_limit`` applies (before, it applied only to an implied route and
    was silently ignored once a route file existed)."""
    config = await asyncio.to_thread(_config, settings, tmp_path,
                                     rest_extra="    rate_limit: {per_second: 0.2, burst: 1}\n")
    assert (config / "routes" / "esop-rest-orders.yaml").exists()
    client = await _client(settings, aiohttp_client, config)
    order = {"external_order_id": "E-R1", "product": "internet_line", "scenario": "open",
             "customer": {"name": "某公司"}, "addresses": [{"city": "杭州", "detail": "文三路1号"}]}
    first = await client.post("/api/v1/partners/esop/orders", json=order, headers=API_KEY)
    assert first.status == 202, await first.text()
    second = await client.post("/api/v1/partners/esop/orders", json={**order, "external_order_id": "E-R2"},
                               headers=API_KEY)
    assert second.status == 429 and second.headers["Retry-After"] == "5"
