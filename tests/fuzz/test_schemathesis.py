"""Schemathesis against a live hub (issue 17 §6): the web app as ``hub run`` serves it
(the slow-client bounds of ``app.web.serve``, the real router, the runtime on the session's Kafka
and MongoDB), every operation of the document it serves at ``/openapi.json``, a bounded budget per
operation. Fails on any 5xx the document does not allow, any request unanswered within 10 s, and any
answer whose status, content type, headers or body the document does not describe."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from app import slowclients
from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import Settings
from tests.conftest import free_port
from tests.fuzz.live import fuzz

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
# per operation. At 30 with the 76 operations the document now has (admin, console data, reports, jobs) the
# test sent ≈ 2,300 requests and took 240 s of a loaded CI run, the longest test of the suite; 10 keeps
# every operation fuzzed with its refusals and happy paths (≈ 760 requests)
MAX_EXAMPLES = 10


async def test_the_live_hub_answers_every_generated_request_as_its_document_says(settings: Settings) -> None:
    port = free_port()
    runner = web.AppRunner(build_web_app(Runtime(settings)), access_log=None, **slowclients.server_options(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{base}/openapi.json") as resp:
            assert resp.status == 200
            document = await resp.json()
        assert document == json.loads(SHIPPED.read_text(encoding="utf-8")), "served ≠ docs/openapi.json"
        report = await asyncio.to_thread(fuzz, document, base, max_examples=MAX_EXAMPLES)
    finally:
        await runner.cleanup()
    print("\n" + report.table())
    assert len(report.examples) == len([op for path in document["paths"].values() for op in path]), \
        "an operation was not fuzzed"
    assert not report.failures, report.table()
    # the happy paths were reached too, not only refusals: the document's examples are valid requests
    assert report.statuses["POST /api/v1/partners/{partner}/orders"][202] >= 1, report.table()
    assert report.statuses["POST /soap/{partner}"][200] >= 1, report.table()


async def test_the_fuzzer_reports_an_answer_the_document_does_not_describe() -> None:
    """The harness itself: a server that answers ``/healthz`` with a body off its schema, ``/readyz``
    with an undocumented status, ``/metrics`` with a 500 and ``/admin/v1/readiness`` without its
    bearer token checked is reported four times — so a clean run above means the checks ran, not
    that they were skipped."""

    async def wrong_body(request: web.Request) -> web.Response:
        return web.json_response({"status": "fine"})

    async def wrong_status(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready", "checks": {}}, status=201)

    async def crash(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def open_door(request: web.Request) -> web.Response:  # declares a bearer token, never checks it
        return web.json_response({"status": "ready", "checks": {}})

    app = web.Application()
    app.router.add_get("/healthz", wrong_body)
    app.router.add_get("/readyz", wrong_status)
    app.router.add_get("/metrics", crash)
    app.router.add_get("/admin/v1/readiness", open_door)
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    document = {**shipped, "paths": {p: shipped["paths"][p] for p in ("/healthz", "/readyz", "/metrics",
                                                                          "/admin/v1/readiness")}}
    port = free_port()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        report = await asyncio.to_thread(fuzz, document, f"http://127.0.0.1:{port}", max_examples=3)
    finally:
        await runner.cleanup()
    found = {(op, title) for op, title in report.failures}
    assert ("GET /healthz", "Response violates schema") in found, report.table()
    assert ("GET /readyz", "Undocumented status code") in found, report.table()
    assert ("GET /metrics", "HTTP 500") in found, report.table()
    assert any(op == "GET /admin/v1/readiness" and "auth" in title.lower() for op, title in found), report.table()
