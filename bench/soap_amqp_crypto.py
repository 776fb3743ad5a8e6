"""Per-field encryption on SOAP and AMQP intake: cost per message and throughput, clear vs encrypted
in the same run.

    .venv/bin/python -m bench.soap_amqp_crypto cpu [--n 2000]          # µs CPU per SOAP request, no servers
    .venv/bin/python -m bench.soap_amqp_crypto soap [--duration 10] [--concurrency 50]
    .venv/bin/python -m bench.soap_amqp_crypto amqp [--messages 3000]

* ``cpu``  — what the SOAP intake adds per request: ``connectors.soap.crypto.decrypt_request`` on the
  request element of bench/soap.py's ``receiveWorkOrder`` with 3 fields sealed (customer name, phone,
  address detail; AES-256-GCM, the key RSA-2048-OAEP-wrapped in a SOAP header element), against
  ``xmlsafe.to_dict`` of the clear element (what the intake does without a contract).
* ``soap`` — the hub's SOAP intake (bench/intake.py's server, private tansu + SecantusDB), the same
  order in clear and sealed, one after the other.
* ``amqp`` — a pre-filled queue through the real AMQP route onto Kafka (bench/amqp.py), clear and
  sealed (the key in the message's headers).

The partner side is sealed once with one data key (the hub still unwraps and decrypts every message).
Keys: the test keys of tests/fixtures/keys (never real keys).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.crypto import KEYS, per_message_us
from hub.cryptocontract import CryptoContract
from transforms.crypto import encrypt_value, keys_for
from transforms.crypto.wrap import wrap

RUN_ID = uuid.uuid4().hex[:6]
CNS = "http://esop.example.com/ws/crypto"
SOAP_FIELDS = ["customer.name", "customer.contactPhone", "address.detail"]
AMQP_FIELDS = ["customerName", "contactPhone", "addresses.detail"]
CARRY = {"via": "soap_header", "key": "encryptedKey", "key_id": "keyId", "namespace": CNS}


def contract(fields: list[str], carry: dict[str, Any] | None = None) -> CryptoContract:
    return CryptoContract.model_validate({
        "cipher": "aes", "mode": "gcm", "carry": carry or {},
        "partner_keys": [{"id": "p", "file": str(KEYS / "test-partner-2026a.pub.pem")}],
        "our_keys": [{"id": "h", "file": str(KEYS / "test-hub-2026a.key.pem")}], "inbound_fields": fields})


def sealer() -> tuple[Any, str]:
    """(seal(text) → base64, the wrapped key as base64) — the partner's side, one data key."""
    theirs = contract([])
    key = os.urandom(32)
    public = keys_for(CryptoContract.model_validate({
        "partner_keys": [{"id": "h", "file": str(KEYS / "test-hub-2026a.pub.pem")}]})).public_key()[1]
    wrapped = base64.b64encode(wrap(theirs.key_wrap, public, key)).decode()
    return (lambda text: encrypt_value(theirs, key, None, text)), wrapped


def soap_request(order_no: str, seal: Any = None, wrapped: str | None = None) -> str:
    from bench.soap import REQUEST

    text = REQUEST.format(order_no=order_no)
    if seal is None:
        return text
    for clear in ("杭州某某科技有限公司", "13800000000", "文三路 100 号 5 幢 3 楼"):
        text = text.replace(f">{clear}<", f">{seal(clear)}<")
    header = f'<c:encryptedKey xmlns:c="{CNS}">{wrapped}</c:encryptedKey><c:keyId xmlns:c="{CNS}">h</c:keyId>'
    return text.replace("</wsse:Security></soap:Header>", f"</wsse:Security>{header}</soap:Header>")


def cpu(n: int) -> None:
    from lxml import etree

    from connectors.soap import xmlsafe
    from connectors.soap.crypto import decrypt_request

    ours = contract(SOAP_FIELDS, CARRY)
    keys_for(ours).warm()
    seal, wrapped = sealer()
    clear_root = xmlsafe.parse(soap_request("S-1").encode())
    sealed_root = xmlsafe.parse(soap_request("S-1", seal, wrapped).encode())
    body = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
    lists = frozenset({"address"})

    def clear() -> Any:
        return xmlsafe.to_dict(etree.fromstring(etree.tostring(clear_root.find(body)[0])), lists)

    def sealed() -> Any:
        fragment = etree.fromstring(etree.tostring(sealed_root.find(body)[0]))
        return decrypt_request(ours, fragment, sealed_root, {}, lists).data

    assert sealed() == clear(), "the sealed request must decrypt to the clear one"
    base, enc = per_message_us(clear, n), per_message_us(sealed, max(200, n // 10))
    print(f"SOAP request element → dict, clear: {base:.0f} µs; 3 fields AES-256-GCM + RSA-2048 unwrap: {enc:.0f} µs "
          f"(+{enc - base:.0f} µs CPU per request)")


def soap(duration: float, concurrency: int) -> None:
    from bench._common import closed_loop, free_port, private_infra, wait_http
    from bench.soap import HEADERS

    seal, wrapped = sealer()
    block = ("\ncrypto:\n  cipher: aes\n  mode: gcm\n"
             f"  carry: {{via: soap_header, key: encryptedKey, key_id: keyId, namespace: '{CNS}'}}\n"
             f"  our_keys: [{{id: h, file: {KEYS / 'test-hub-2026a.key.pem'}}}]\n"
             f"  inbound_fields: {SOAP_FIELDS}\n")
    with tempfile.TemporaryDirectory() as tmp, private_infra(sftp=True) as env:
        shipped = Path(__file__).resolve().parents[1] / "config"
        config = Path(tmp) / "config"
        shutil.copytree(shipped, config)
        esop = config / "partners" / "esop.yaml"
        esop.write_text(esop.read_text(encoding="utf-8") + block, encoding="utf-8")
        results = []
        for name, sealing, config_dir in (("SOAP intake, clear", None, shipped),
                                          ("SOAP intake, 3 fields AES-GCM", seal, config)):
            tag = base64.b32encode(os.urandom(5)).decode().lower()

            def make(i: int, sealing: Any = sealing, tag: str = tag) -> tuple[bytes, dict[str, str]]:
                return soap_request(f"S{RUN_ID}{tag}-{i}", sealing, wrapped).encode(), HEADERS

            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "bench.intake", "serve-hub", "--port", str(port)],
                                    env={**os.environ, **env, "HUB_CONFIG_DIR": str(config_dir)})
            try:
                wait_http(f"http://127.0.0.1:{port}/readyz")
                result = asyncio.run(closed_loop(name, f"http://127.0.0.1:{port}/soap/esop", make,
                                                 concurrency=concurrency, duration=duration, ok_status=200))
                results.append(result)
                print(result.line(), flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        clear, enc = results
        print(f"encrypted / clear throughput: {enc.rate / clear.rate:.2f} (p99 {enc.pct(99):.1f} ms vs "
              f"{clear.pct(99):.1f} ms; concurrency {concurrency}, {duration:.0f} s each)")


async def _amqp_run(url: str, n: int, sealed: bool) -> float:
    import aio_pika

    from app.runtime import Runtime
    from bench.amqp import body
    from connectors.context import ConnectorContext
    from connectors.registry import registry
    from hub.settings import load_settings
    from routes.models import route_model
    from routes.pipeline import RouteEmit

    queue = f"bench.crypto.{RUN_ID}.{int(sealed)}"
    seal, wrapped = sealer()
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(queue, durable=True, arguments={"x-dead-letter-exchange": f"{queue}.dlx"})
        for start in range(0, n, 500):
            messages = []
            for i in range(start, min(n, start + 500)):
                data = json.loads(body(i))
                data["orderNo"] += f"-{int(sealed)}"
                headers: dict[str, Any] = {}
                if sealed:
                    data["customerName"], data["contactPhone"] = seal(data["customerName"]), seal(data["contactPhone"])
                    data["addresses"][0]["detail"] = seal(data["addresses"][0]["detail"])
                    headers = {"X-Encrypted-Key": wrapped, "X-Key-Id": "h"}
                messages.append(aio_pika.Message(json.dumps(data, ensure_ascii=False).encode(), headers=headers,
                                                 message_id=f"{RUN_ID}-{int(sealed)}-{i}",
                                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT))
            await asyncio.gather(*(ch.default_exchange.publish(m, routing_key=queue) for m in messages))
    settings = load_settings()
    rt = Runtime(settings, partners={})
    await rt.start()
    route = route_model().model_validate({
        "name": f"bench-amqp-{int(sealed)}", "canonical": "work_order", "target": {"topic": "inbound"},
        "source": {"connector": "amqp", "partner": "group", "queue": queue, "prefetch": 200},
        "transform": {"field_map": {"orderNo": "external_order_id", "productCode": "product",
                                    "scenarioCode": "scenario", "customerName": "customer.name",
                                    "contactPhone": "customer.contact_phone", "bandwidthMbps": "bandwidth_mbps"},
                      "value_map": {"scenario": {"01": "open"}}}})
    source_config = route.source.model_copy(update={"crypto": contract(AMQP_FIELDS)}) if sealed else route.source
    emit = RouteEmit(route, prefix=settings.topic_prefix, intake=rt.intake, producer=rt.producer)
    assert emit.topic is not None
    await rt.ensure_topic(emit.topic)
    source = registry.get("source", "amqp").factory(source_config, ConnectorContext(  # type: ignore[attr-defined]
        settings, route.name, rt.db, rt.producer))
    t0 = time.perf_counter()
    await source.start(emit)
    while source.stats["acked"] + source.stats["rejected"] < n:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - t0
    assert source.stats["rejected"] == 0, source.stats
    await source.stop()
    await rt.stop()
    return n / seconds


def amqp(n: int) -> None:
    from bench._common import free_port, private_infra

    os.environ["HUB_AMQP_PORT"] = str(free_port())
    os.environ["HUB_AMQP_ENABLED"] = "true"
    with private_infra():
        from connectors.amqp.settings import AmqpSettings

        url = AmqpSettings().embedded_url
        clear = asyncio.run(_amqp_run(url, n, sealed=False))
        print(f"AMQP → Kafka, clear: {clear:.0f} msg/s ({n} messages, prefetch 200)", flush=True)
        enc = asyncio.run(_amqp_run(url, n, sealed=True))
        print(f"AMQP → Kafka, 3 fields AES-GCM (key in headers): {enc:.0f} msg/s; encrypted / clear {enc / clear:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cpu", "soap", "amqp"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    if args.mode == "cpu":
        return cpu(args.n)
    if args.mode == "soap":
        return soap(args.duration, args.concurrency)
    return amqp(args.messages)


if __name__ == "__main__":
    main()
