"""Slow clients are timed out (issue 17: 200 connections trickling a byte every 5 s stayed open).

Three bounds, with aiohttp's own knobs where it has one:

* **Request head** and **idle keep-alive**: aiohttp's ``keepalive_timeout``. Its timer starts when a
  connection opens and again after each answer, and closes the connection if no *complete* request
  head has arrived by then; bytes of a partial head do not restart it. So one setting,
  ``HUB_HTTP_HEADER_TIMEOUT_S``, bounds both a head trickled byte by byte and an idle connection
  (aiohttp cannot tell them apart without patching its protocol class; not worth it). The close is
  aiohttp's: no answer (HTTP allows none before a request), no log line, no metric.
* **Request body**: :func:`body_deadline`, a middleware. The whole body must be *received* within
  ``HUB_HTTP_BODY_TIMEOUT_S`` of the head; otherwise the handler is cancelled wherever it waits
  (normally reading the body), and the client gets ``408`` problem+json with ``Connection: close``,
  a log line and ``hub_http_body_timeouts_total``. A total deadline, not one per read: a read
  timeout is reset by every byte, which is exactly what a trickling client sends.
* **Draining after an early answer**: aiohttp reads and drops the rest of an unread body for
  ``lingering_time`` (10 s) before closing, so a client still sending reads the answer instead of
  a reset; :func:`server_options` caps that at the body bound, so a 408'd trickler is gone by then.

* **TLS handshake** (HTTPS, ``HUB_HTTP_TLS_CERT``): asyncio gives a handshake 60 s and aiohttp's
  ``TCPSite`` has no knob for it; :class:`HandshakeBoundedSite` passes ``HUB_HTTP_HEADER_TIMEOUT_S``
  instead, so a client that connects and never finishes its handshake is closed at the head bound
  (aiohttp's head timer starts only once the handshake is done: a head then has its own bound).

No cap on concurrent connections: aiohttp has none (``backlog`` is only the listen queue), and a
per-address cap needs a protocol factory of our own. A reverse proxy or the firewall does that.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from hub.metrics import HTTP_BODY_TIMEOUTS
from hub.problem import problem
from hub.settings import Settings

log = logging.getLogger(__name__)

AIOHTTP_LINGERING_S = 10.0  # aiohttp's default lingering_time


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (passed on to each connection's protocol)."""
    return {
        "keepalive_timeout": settings.http_header_timeout_s,
        "lingering_time": min(AIOHTTP_LINGERING_S, settings.http_body_timeout_s),
    }


class HandshakeBoundedSite(web.TCPSite):
    """``web.TCPSite`` whose TLS handshakes must finish within ``handshake_timeout_s`` (asyncio's
    ``ssl_handshake_timeout``, which ``TCPSite`` does not pass on; its ``start`` otherwise as aiohttp's)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, ssl_context: ssl.SSLContext,
                 handshake_timeout_s: float, reuse_port: bool = False) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port)
        self.handshake_timeout_s = handshake_timeout_s
        self.reuse_port = reuse_port

    async def start(self) -> None:
        self._runner._reg_site(self)  # what BaseSite.start does
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            ssl_handshake_timeout=self.handshake_timeout_s, ssl_shutdown_timeout=self.handshake_timeout_s,
            reuse_port=self.reuse_port or None)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def site(runner: web.BaseRunner, settings: Settings, host: str, port: int,
         ssl_context: ssl.SSLContext | None, *, reuse_port: bool = False) -> web.TCPSite:
    """The listening site: plain HTTP, or HTTPS with the handshake bounded like a request head;
    ``reuse_port``: bound with ``SO_REUSEPORT`` (several processes on one port, app/web.py serve)."""
    if ssl_context is None:
        return web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    return HandshakeBoundedSite(runner, host, port, ssl_context=ssl_context,
                                handshake_timeout_s=settings.http_header_timeout_s, reuse_port=reuse_port)


def body_deadline(timeout_s: float) -> Middleware:
    """A middleware giving each request with a body ``timeout_s`` to have all of it received.

    Why cancel rather than fail the read: handlers read bodies in different ways (streamed with a
    size limit, ``read()``, or only after an auth check), and a cancellation reaches every one of
    them the same way; only a request whose body is still incomplete at the deadline is touched."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:

                def check() -> None:
                    if not request.content.is_eof():
                        deadline.reschedule(loop.time())

                timer = loop.call_later(timeout_s, check)
                try:
                    return await handler(request)
                finally:
                    timer.cancel()
        except TimeoutError:
            if not deadline.expired():
                raise  # the handler's own timeout, not ours
        return _timed_out(request, timeout_s)

    return middleware


def _timed_out(request: web.Request, timeout_s: float) -> web.Response:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    HTTP_BODY_TIMEOUTS.labels(name).inc()
    log.warning("slow client %s: %s %s body incomplete after %g s (%d of %s bytes): 408, closing",
                request.remote, request.method, name, timeout_s, request.content.total_bytes,
                request.content_length if request.content_length is not None else "chunked")
    response = problem(408, "Request Timeout", f"the request body did not arrive within {timeout_s:g} s",
                       headers={"Connection": "close"})
    response.force_close()
    return response
