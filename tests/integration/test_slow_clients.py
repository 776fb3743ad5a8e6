"""Issue 17, found by the outside probe: slow clients were never timed out (200 connections trickling a
byte every 5 s stayed open). Raw sockets against the hub's web app served the way ``hub run`` serves
it (``app.web.serve``: the real AppRunner options, real broker and database), with the bounds set
short: a head or a body trickled a byte a second is cut off at its bound while normal clients are served."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client import REGISTRY

from app.runtime import Runtime
from app.web import build_web_app, serve
from hub.settings import Settings

pytestmark = pytest.mark.integration

HEAD_S = 2.0  # HUB_HTTP_HEADER_TIMEOUT_S in these tests
BODY_S = 2.0  # HUB_HTTP_BODY_TIMEOUT_S
SLACK_S = 2.0  # scheduling on a shared 2-core machine; the trickles below last far longer (15 s)
ESOP_KEY = "dev-esop-key-0001"
INTAKE = "/api/v1/partners/esop/orders"


def order(ext: str) -> bytes:
    return json.dumps({"external_order_id": ext, "product": "internet_line", "scenario": "open",
                       "customer": {"name": "Acme"},
                       "addresses": [{"city": "Hangzhou", "detail": "1 Wensan Rd"}]}).encode()


@pytest.fixture
async def port(settings: Settings) -> AsyncIterator[int]:
    short = settings.model_copy(update={"http_header_timeout_s": HEAD_S, "http_body_timeout_s": BODY_S})
    runner = await serve(build_web_app(Runtime(short)), short, port=0)
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@dataclass
class Trickled:
    answered_after: float | None  # seconds from connecting to the first byte of an answer
    closed_after: float | None  # seconds from connecting to the server's close (None: still open)
    sent: int  # bytes written before the server answered or closed
    answer: bytes


async def trickle(port: int, data: bytes, *, prefix: bytes = b"", every: float = 1.0) -> Trickled:
    """Write ``prefix`` at once, then ``data`` one byte every ``every`` s, reading meanwhile, until the
    server closes or the data runs out (the trickles here outlast every bound by far: running out
    means nothing cut us off)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = loop.time()
    writer.write(prefix)
    await writer.drain()
    answered: list[float] = []
    answer = bytearray()

    async def read_all() -> float:
        try:
            while chunk := await reader.read(65536):
                if not answer:
                    answered.append(loop.time() - start)
                answer.extend(chunk)
        except ConnectionError:
            pass
        return loop.time() - start

    reading = asyncio.create_task(read_all())
    sent = 0
    try:
        for i in range(len(data)):
            if reading.done():
                break
            try:
                writer.write(data[i:i + 1])
                await writer.drain()
            except ConnectionError:
                break
            sent += 1
            await asyncio.wait([reading], timeout=every)
        try:
            closed: float | None = await asyncio.wait_for(asyncio.shield(reading), 1.0)
        except TimeoutError:
            closed = None
    finally:
        reading.cancel()
        writer.close()
    return Trickled(answered[0] if answered else None, closed, sent, bytes(answer))


async def served_meanwhile(port: int, stop: asyncio.Event, *, post_order: bool = False) -> list[int]:
    """Statuses of normal requests made every 0.3 s until ``stop`` (health checks, or real orders)."""
    statuses: list[int] = []
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", timeout=aiohttp.ClientTimeout(total=10)) as http:
        n = 0
        while not stop.is_set():
            n += 1
            if post_order:
                resp = await http.post(INTAKE, data=order(f"SLOW-OK-{n}"),
                                       headers={"X-Api-Key": ESOP_KEY, "Content-Type": "application/json"})
            else:
                resp = await http.get("/healthz")
            statuses.append(resp.status)
            resp.release()
            try:
                await asyncio.wait_for(stop.wait(), 0.3)
            except TimeoutError:
                pass
    return statuses


async def test_a_head_trickled_a_byte_a_second_is_cut_off_while_others_are_served(port: int) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Padding: " + b"a" * 40  # never complete
    stop = asyncio.Event()
    others = asyncio.create_task(served_meanwhile(port, stop))
    try:
        results = await asyncio.gather(*(trickle(port, head) for _ in range(20)))
    finally:
        stop.set()
    statuses = await others
    for r in results:
        assert r.closed_after is not None, f"still open after {r.sent} bytes over {r.sent} s"
        assert HEAD_S - 0.5 <= r.closed_after <= HEAD_S + SLACK_S, r
        assert r.answer == b"", r  # HTTP has nothing to answer before a request
    assert len(statuses) >= 3 and set(statuses) == {200}, statuses


async def test_an_idle_keep_alive_connection_is_closed(port: int) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")  # HTTP/1.1: kept alive
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await asyncio.wait_for(reader.readexactly(length), 5)
        answered = loop.time()
        rest = await asyncio.wait_for(reader.read(), HEAD_S + SLACK_S + 5)  # b"" once the server closes
        idle = loop.time() - answered
    finally:
        writer.close()
    assert rest == b""
    assert HEAD_S - 0.5 <= idle <= HEAD_S + SLACK_S, idle


async def test_a_body_trickled_a_byte_a_second_gets_408_and_the_connection_closes(
    port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    body = order("SLOW-BODY-1")
    head = (f"POST {INTAKE} HTTP/1.1\r\nHost: hub\r\nX-Api-Key: {ESOP_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    before = REGISTRY.get_sample_value("hub_http_body_timeouts_total", {"route": INTAKE.replace("esop", "{partner}")})
    stop = asyncio.Event()
    others = asyncio.create_task(served_meanwhile(port, stop, post_order=True))
    caplog.set_level(logging.WARNING, logger="app.slowclients")
    try:
        # the head in one piece, then the body a byte a second: the head bound is not what cuts it off
        result = await trickle(port, body, prefix=head)
    finally:
        stop.set()
    statuses = await others
    assert result.answer.startswith(b"HTTP/1.1 408"), result
    assert b"application/problem+json" in result.answer and b"Connection: close" in result.answer
    assert result.answered_after is not None and BODY_S - 0.5 <= result.answered_after <= BODY_S + SLACK_S
    assert result.closed_after is not None, f"still open after {result.sent} body bytes"
    assert result.closed_after <= 2 * BODY_S + SLACK_S, result  # + the drain (lingering), capped at BODY_S
    assert result.sent < len(body)
    after = REGISTRY.get_sample_value("hub_http_body_timeouts_total", {"route": INTAKE.replace("esop", "{partner}")})
    assert (after or 0) - (before or 0) == 1
    assert any("slow client" in m and "408" in m for m in caplog.messages), caplog.messages
    assert len(statuses) >= 3 and set(statuses) == {202}, statuses



async def test_a_body_sent_in_pieces_within_the_bound_is_accepted(port: int) -> None:
    """The bound is on the whole body, not on each byte: a slow but timely sender is served."""
    body = order("SLOW-BUT-IN-TIME-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((f"POST {INTAKE} HTTP/1.1\r\nHost: hub\r\nX-Api-Key: {ESOP_KEY}\r\nConnection: close\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        quarter = len(body) // 4 + 1
        for i in range(0, len(body), quarter):
            writer.write(body[i:i + quarter])
            await writer.drain()
            await asyncio.sleep(0.25)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer


async def test_a_soap_body_trickled_a_byte_a_second_gets_408(port: int) -> None:
    body = b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/>'
    head = (f"POST /soap/esop HTTP/1.1\r\nHost: hub\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"Content-Length: {len(body) + 20}\r\n\r\n").encode()
    result = await trickle(port, body, prefix=head)
    assert result.answer.startswith(b"HTTP/1.1 408"), result
    assert result.closed_after is not None and result.closed_after <= 2 * BODY_S + SLACK_S, result
