"""Inbound SOAP against the real broker and database, with zeep as the partner's client and raw
malicious XML as the attacker's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from zeep import Client
from zeep.exceptions import Fault
from zeep.wsse.username import UsernameToken

from app.runtime import Runtime
from app.web import RUNTIME, build_web_app
from hub import topics
from hub.order import order_id_for
from hub.settings import Settings
from tests.conftest import free_port
from tests.support import read_topic, topic_envelopes

URL = "/soap/esop"
USER, PASSWORD = "esop", "dev-esop-soap-pass"


async def serve(aiohttp_client: Any, settings: Settings) -> TestClient:
    """The hub's web app on a port chosen first, published as its ``public_url``: the WSDL's service
    address is configuration (never the request's Host), so zeep posts where the test server listens."""
    port = free_port()
    published = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    return await aiohttp_client(build_web_app(Runtime(published)), server_kwargs={"port": port})


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await serve(aiohttp_client, settings)


def zeep_client(client: TestClient, *, digest: bool = False, password: str = PASSWORD) -> Client:
    """zeep loads the WSDL synchronously: build it on a thread so our event loop can serve it."""
    return Client(str(client.make_url(URL)) + "?wsdl", wsse=UsernameToken(USER, password, use_digest=digest))


def work_order(ext: str = "S-1001", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "orderNo": ext, "productCode": "internet_line", "scenarioCode": "01",
        "customer": {"name": "宁波某某贸易公司", "contactPhone": "13900000000"},
        "address": [{"city": "宁波", "detail": "中山路8号"}], "bandwidthMbps": 200, "accessType": "PON",
    }
    body.update(over)
    return body


async def call(zc: Client, op: str, **kw: Any) -> Any:
    return await asyncio.to_thread(lambda: getattr(zc.service, op)(**kw))


async def test_zeep_client_reads_the_wsdl_and_a_work_order_lands_on_kafka(client: TestClient,
                                                                          settings: Settings) -> None:
    zc = await asyncio.to_thread(zeep_client, client)
    answer = await call(zc, "receiveWorkOrder", **work_order())
    assert answer.resultCode == "0" and answer.duplicate is False
    assert answer.orderId == order_id_for("esop", "S-1001", "open")

    (env,) = await topic_envelopes(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    assert (env.protocol, env.type, env.scenario, env.product) == ("soap", "order.received", "open", "internet_line")
    assert env.id == answer.envelopeId
    assert env.payload["addresses"] == [{"role": "install", "city": "宁波", "detail": "中山路8号"}]
    assert env.payload["bandwidth_mbps"] == 200 and env.payload["customer"]["contact_phone"] == "13900000000"

    again = await call(zc, "receiveWorkOrder", **work_order())  # redelivery: same ids, nothing new
    assert again.duplicate is True and again.envelopeId == answer.envelopeId


async def test_password_digest_is_accepted_and_a_wrong_password_is_a_fault(client: TestClient) -> None:
    zc = await asyncio.to_thread(zeep_client, client, digest=True)
    assert (await call(zc, "receiveWorkOrder", **work_order("S-2001"))).resultCode == "0"
    bad = await asyncio.to_thread(zeep_client, client, password="wrong-password")
    with pytest.raises(Fault, match="authentication failed"):
        await call(bad, "receiveWorkOrder", **work_order("S-2002"))


async def test_schema_violation_and_unknown_code_are_faults_naming_the_problem(client: TestClient,
                                                                              settings: Settings) -> None:
    body = envelope_xml(order_xml(bandwidth="fast"))
    resp = await client.post(URL, data=body, headers={"Content-Type": "text/xml", "X-Api-Key": "dev-esop-key-0001"})
    text = await resp.text()
    assert resp.status == 500 and "<faultcode>soap:Client</faultcode>" in text
    assert "bandwidthMbps" in text and "schema" in text

    zc = await asyncio.to_thread(zeep_client, client)
    with pytest.raises(Fault, match="unknown code") as info:
        await call(zc, "receiveWorkOrder", **work_order("S-3001", scenarioCode="99"))
    assert "scenario" in info.value.message
    assert await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0) == []


async def test_withdraw_and_status_query_use_the_order_store(client: TestClient, settings: Settings) -> None:
    """撤单 interrupts the running order (issue 10 §5): an ``order.cancel`` of it on {p}.orders, the
    answer names it; nothing running with that external id is a Fault naming the id."""
    zc = await asyncio.to_thread(zeep_client, client)
    missing = await call(zc, "queryOrderStatus", orderNo="S-4001")
    assert missing.resultCode == "1" and "not found" in missing.resultDesc
    with pytest.raises(Fault, match="no running order with external id 'S-4001'"):
        await call(zc, "withdrawOrder", orderNo="S-4001", reason="customer cancelled")

    runtime = client.app[RUNTIME]
    oid = order_id_for("esop", "S-4001", "open")
    now = datetime.now(UTC)
    await runtime.db["orders"].insert_one({  # type: ignore[index]
        "_id": oid, "order_id": oid, "partner": "esop", "external_order_id": "S-4001", "product": "internet_line",
        "scenario": "open", "status": "in_flight", "current_stage": "resource_check", "created_at": now,
        "updated_at": now, "order": {"external_order_id": "S-4001", "product": "internet_line", "scenario": "open",
                                     "customer": {"name": "某公司"}},
    })
    status = await call(zc, "queryOrderStatus", orderNo="S-4001")
    assert (status.resultCode, status.orderId, status.status, status.currentStage) == (
        "0", oid, "in_flight", "resource_check")

    withdrawn = await call(zc, "withdrawOrder", orderNo="S-4001", reason="customer cancelled")
    assert withdrawn.resultCode == "0" and withdrawn.orderId == oid and oid in withdrawn.resultDesc
    (env,) = await topic_envelopes(settings, topics.orders(settings.topic_prefix), expect=1)
    assert (env.type, env.correlation_id, env.idempotency_key) == ("order.cancel", oid, f"cancel:{oid}")
    assert env.payload == {"reason": "customer cancelled", "by": "esop"} and env.protocol == "soap"
    assert env.id == withdrawn.envelopeId
    again = await call(zc, "withdrawOrder", orderNo="S-4001", reason="customer cancelled")  # one effect
    assert again.duplicate is True and again.orderId == oid
    assert await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0) == []


async def test_withdraw_of_a_finished_order_is_a_fault_naming_the_external_id(client: TestClient,
                                                                              settings: Settings) -> None:
    """Only a running order (in_flight / waiting) can be withdrawn; a finished one is not silently
    turned into a new order (before issue 10: a separate 'withdraw' order no blueprint ran)."""
    runtime = client.app[RUNTIME]
    oid = order_id_for("esop", "S-4101", "open")
    now = datetime.now(UTC)
    await runtime.db["orders"].insert_one({  # type: ignore[index]
        "_id": oid, "order_id": oid, "partner": "esop", "external_order_id": "S-4101", "product": "internet_line",
        "scenario": "open", "status": "completed", "created_at": now, "updated_at": now,
        "order": {"external_order_id": "S-4101", "product": "internet_line", "scenario": "open",
                  "customer": {"name": "某公司"}},
    })
    zc = await asyncio.to_thread(zeep_client, client)
    with pytest.raises(Fault) as info:
        await call(zc, "withdrawOrder", orderNo="S-4101", reason="customer cancelled")
    assert "no running order with external id 'S-4101'" in info.value.message
    assert await read_topic(settings, topics.orders(settings.topic_prefix), wait=1.0) == []


@pytest.mark.parametrize("depth", [100, 10_000])
async def test_deeply_nested_xml_is_a_fault_naming_the_limit(client: TestClient, settings: Settings,
                                                             depth: int) -> None:
    deep = "<o:x>" * depth + "</o:x>" * depth
    resp = await client.post(URL, data=envelope_xml(order_xml(extra="").replace("</o:name>", f"</o:name>{deep}")),
                             headers={"Content-Type": "text/xml", "X-Api-Key": "dev-esop-key-0001"})
    text = await resp.text()
    assert resp.status == 500 and "<faultcode>soap:Client</faultcode>" in text, text
    assert "deeper than the limit of 64 levels" in text
    assert await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0) == []


def order_xml(bandwidth: str = "100", extra: str = "") -> str:
    return (
        '<o:receiveWorkOrder xmlns:o="http://hub.example.com/ws/orders"><o:orderNo>S-9</o:orderNo>'
        "<o:productCode>internet_line</o:productCode><o:scenarioCode>01</o:scenarioCode>"
        f"<o:customer><o:name>X{extra}</o:name></o:customer><o:bandwidthMbps>{bandwidth}</o:bandwidthMbps>"
        "</o:receiveWorkOrder>"
    )


def envelope_xml(inner: str, prolog: str = "") -> bytes:
    return (f'{prolog}<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{inner}'
            "</s:Body></s:Envelope>").encode()


XXE = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
BILLION = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
           '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>')


@pytest.mark.parametrize(("prolog", "extra"), [
    (XXE, "&xxe;"),                                     # external entity: file disclosure
    (BILLION, "&c;"),                                   # entity expansion
    ('<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">', ""),  # external DTD fetch
])
async def test_malicious_xml_is_refused_before_anything_is_read(client: TestClient, settings: Settings,
                                                                prolog: str, extra: str) -> None:
    resp = await client.post(URL, data=envelope_xml(order_xml(extra=extra), prolog),
                             headers={"Content-Type": "text/xml", "X-Api-Key": "dev-esop-key-0001"})
    text = await resp.text()
    assert resp.status == 500 and "unsafe XML refused" in text
    assert "root:" not in text and "aaaaaaaaaa" not in text
    assert await read_topic(settings, topics.inbound(settings.topic_prefix, "esop"), wait=1.0) == []


async def test_wsdl_is_published_with_the_serving_address(client: TestClient) -> None:
    resp = await client.get(URL + "?wsdl")
    text = await resp.text()
    assert resp.status == 200 and str(client.make_url(URL)) in text and "?xsd" in text
    missing = await client.post("/soap/nobody", data=envelope_xml(order_xml()), headers={"Content-Type": "text/xml"})
    assert missing.status == 500 and "no SOAP service" in await missing.text()


async def test_wsdl_is_rendered_once_with_the_configured_address_whatever_the_host(
        settings: Settings, aiohttp_client: Any) -> None:
    """1,000 distinct Host headers: one rendering (no per-Host cache to grow), and every answer
    publishes the configured address — a forged Host never becomes the service address."""
    public = "https://hub.example.com/gw"
    client = await aiohttp_client(build_web_app(Runtime(settings.model_copy(update={"public_url": public}))))
    source = client.app[RUNTIME].connector_tables["soap"]["esop"]
    answers = set()
    for n in range(1000):
        resp = await client.get(URL + "?wsdl", headers={"Host": f"evil{n}.example.net"})
        assert resp.status == 200
        answers.add(await resp.read())
    (wsdl,) = answers
    assert source.wsdl_renderings == 1
    assert f'location="{public}/soap/esop"'.encode() in wsdl and f"{public}/soap/esop?xsd".encode() in wsdl
    assert b"evil" not in wsdl and b"127.0.0.1" not in wsdl
    xsd = await client.get(URL + "?xsd", headers={"Host": "evil.example.net"})
    assert xsd.status == 200 and b"targetNamespace" in await xsd.read()


def digest_token(nonce: bytes, created: str, password: str = PASSWORD) -> str:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    return ('<s:Header><w:Security xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-'
            'secext-1.0.xsd" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0'
            f'.xsd"><w:UsernameToken><w:Username>{USER}</w:Username><w:Password Type="http://docs.oasis-open.org/wss/'
            f'2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{digest}</w:Password>'
            f'<w:Nonce>{base64.b64encode(nonce).decode()}</w:Nonce><u:Created>{created}</u:Created>'
            "</w:UsernameToken></w:Security></s:Header>")


async def test_replayed_or_stale_password_digest_is_refused(client: TestClient) -> None:
    import os

    def signed(nonce: bytes, created: str) -> bytes:
        header = digest_token(nonce, created)
        return envelope_xml(order_xml()).replace(b"<s:Body>", header.encode() + b"<s:Body>")

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = signed(os.urandom(16), now)
    first = await client.post(URL, data=request, headers={"Content-Type": "text/xml"})
    assert first.status == 200, await first.text()
    replay = await client.post(URL, data=request, headers={"Content-Type": "text/xml"})
    assert replay.status == 500 and "replayed" in await replay.text()
    stale = await client.post(URL, data=signed(os.urandom(16), "2020-01-01T00:00:00Z"),
                              headers={"Content-Type": "text/xml"})
    assert stale.status == 500 and "expired" in await stale.text()


@pytest.mark.parametrize("respell", [
    pytest.param(lambda b64: b64 + "!", id="stray-bang"),
    pytest.param(lambda b64: b64[:8] + "\n" + b64[8:], id="newline"),
    pytest.param(lambda b64: f"  {b64}  ", id="spaces"),
])
async def test_a_respelled_nonce_is_a_fault_not_a_second_acceptance(client: TestClient, settings: Settings,
                                                                    respell: Any) -> None:
    """The digest covers the decoded nonce; a lenient decoder skipped '!', newlines and spaces, so the
    same nonce re-spelled passed the replay check (remembered by text) and was accepted twice.
    Decoded strictly: the respelling is a soap:Client fault (it was a 500 error page for a nonce
    no decoder accepts), and the original is remembered by its bytes."""
    import base64
    import os

    nonce = os.urandom(16)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = digest_token(nonce, now)
    b64 = base64.b64encode(nonce).decode()
    first = envelope_xml(order_xml()).replace(b"<s:Body>", header.encode() + b"<s:Body>")
    resp = await client.post(URL, data=first, headers={"Content-Type": "text/xml"})
    assert resp.status == 200, await resp.text()
    again = first.replace(f"<w:Nonce>{b64}</w:Nonce>".encode(), f"<w:Nonce>{respell(b64)}</w:Nonce>".encode())
    assert again != first
    resp = await client.post(URL, data=again, headers={"Content-Type": "text/xml"})
    text = await resp.text()
    assert resp.status == 500 and "<faultcode>soap:Client</faultcode>" in text, text
    assert "Nonce is not valid base64" in text


async def test_a_malformed_nonce_is_a_client_fault(client: TestClient) -> None:
    """A nonce no base64 decoder accepts (bad padding) was an unhandled binascii.Error: a 500 error page."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = digest_token(b"0123456789abcdef", now).replace("MDEyMzQ1Njc4OWFiY2RlZg==", "MDEyM")
    resp = await client.post(URL, data=envelope_xml(order_xml()).replace(b"<s:Body>", header.encode() + b"<s:Body>"),
                             headers={"Content-Type": "text/xml"})
    text = await resp.text()
    assert "<faultcode>soap:Client</faultcode>" in text and "Nonce is not valid base64" in text, text


async def test_head_on_the_soap_endpoint_answers_like_get(client: TestClient) -> None:
    """HEAD went to the POST handler (content type check → fault, 500); it is GET without a body."""
    resp = await client.head(URL + "?wsdl")
    assert resp.status == 200 and resp.content_type == "text/xml"
    assert (await client.head(URL)).status == 400
