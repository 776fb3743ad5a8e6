"""Call-chain tracing (issue 14 item 6) against the real servers: the MongoDB summary, the OTLP
export to a real receiver on loopback, one order's whole chain through a real ``hub run``, and no
sensitive value in a span (issue 17 §3)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from app.web import RUNTIME
from hub import tracing
from hub.envelope import TraceContext
from hub.settings import Settings
from tests.conftest import free_port
from tests.integration.flow_harness import ESOP_KEY, HUB, running_flow_env
from tests.integration.otlp_receiver import Receiver
from tests.integration.test_flow_e2e import at, done
from tests.integration.test_masking_e2e import CUSTOMER, leaks
from tests.support import eventually

pytestmark = pytest.mark.integration
PARTNER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # the W3C spec's example


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


async def test_a_span_is_summarised_in_mongodb_and_exported_over_otlp(settings: Settings, receiver: Receiver) -> None:
    from app.runtime import Runtime

    rt = Runtime(settings.model_copy(update={"otlp_endpoint": receiver.url}))
    await rt.start()
    trace = TraceContext()
    try:
        with tracing.hop(trace, "hub.engine", "order.received", "ord-t1") as h:
            pass
        with pytest.raises(KeyError), tracing.hop(h.trace, "esop", "close_report", "ord-t1", kind="client"):
            raise KeyError("13977106542")
    finally:
        await rt.stop()  # writes the summary and flushes the OTLP batch
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    db = client[settings.mongo_db]
    docs = await tracing.spans_of(db, "ord-t1")
    stored = await db[tracing.COLLECTION].count_documents({"order_id": "ord-t1"})
    indexes = {i["name"]: i async for i in db[tracing.COLLECTION].list_indexes()}
    client.close()
    assert [(d["service"], d["operation"], d["outcome"], d["error"]) for d in docs] == [
        ("hub.engine", "order.received", "ok", None), ("esop", "close_report", "error", "KeyError")]
    assert {d["trace_id"] for d in docs} == {trace.trace_id}
    assert docs[0]["parent_id"] == trace.traceparent.split("-")[2] and docs[1]["parent_id"] == docs[0]["span_id"]
    assert stored == 1  # the second's spans of one order: one document
    assert all(d["duration_ms"] >= 0 for d in docs)
    assert indexes["ttl_start"]["expireAfterSeconds"] == tracing.TTL_S and "by_order" in indexes
    # the same two spans reached the collector, with the same ids
    assert {(s["span_id"], s["parent_id"]) for s in receiver.spans} == {(d["span_id"], d["parent_id"]) for d in docs}
    assert not any("13977106542" in b.decode("latin-1") for b in receiver.bodies)


def _cli(env: dict[str, str], *args: str) -> str:
    ran = subprocess.run([HUB, *args], env=env, capture_output=True, timeout=60, check=False)
    assert ran.returncode == 0, (args, ran.stdout[-2000:], ran.stderr[-2000:])
    return ran.stdout.decode()


async def test_one_order_is_one_trace_from_intake_to_the_close_report(
        settings: Settings, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_OTLP_ENDPOINT", receiver.url)  # the hub run's environment (flow_harness.hub_env)
    async with running_flow_env(settings, tmp_path) as env:
        # the partner traces too: its traceparent is continued (connectors/rest/source.py partner_trace)
        async with aiohttp.ClientSession() as http, http.post(
                f"{env.hub.url}/api/v1/partners/esop/orders", headers={**ESOP_KEY, "traceparent": PARTNER},
                json={"external_order_id": "ESOP-TRACE-1", "product": "internet_line", "scenario": "open",
                      "customer": CUSTOMER, "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}],
                      "bandwidth_mbps": 100, "access_type": "PON"}) as r:
            assert r.status == 202, await r.text()
            order_id = (await r.json())["order_id"]
        await env.wait_order(order_id, at("verification"))
        status, body = await env.submit(order_id, "verification", {})
        assert status == 202, body
        doc = await env.wait_order(order_id, done)
        trace_id = TraceContext.model_validate(doc["trace"]).trace_id

        async def summarised() -> list[dict[str, Any]]:  # written once a second, after the close report
            docs = await tracing.spans_of(env.db, order_id)
            ok = any(d["service"] == "esop" and d["operation"] == "close_report" for d in docs) and any(
                d["service"] == "hub.engine" and d["operation"] == "call.result" for d in docs)
            return docs if ok else []

        docs = await eventually(summarised, timeout=20)
        await asyncio.sleep(1.5)  # the last engine spans of the close report's result
        docs = await tracing.spans_of(env.db, order_id)
        documents = await env.db[tracing.COLLECTION].count_documents({"order_id": order_id})
        shown = json.loads(await asyncio.to_thread(_cli, env.hub.env, "orders", "trace", order_id, "--json"))
        table = await asyncio.to_thread(_cli, env.hub.env, "orders", "trace", order_id)
        viewer = {"Authorization": "Bearer dev-viewer-token-0001"}
        async with aiohttp.ClientSession() as http:  # the admin API: the same document; an unknown order 404
            async with http.get(f"{env.hub.url}/admin/v1/orders/{order_id}/trace", headers=viewer) as r:
                assert r.status == 200, await r.text()
                api = await r.json()
            async with http.get(f"{env.hub.url}/admin/v1/orders/ord-none/trace", headers=viewer) as r:
                assert r.status == 404 and r.content_type == "application/problem+json"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:  # the console
            async with web.post(f"{env.hub.url}/console/login",
                                data={"token": "dev-operator-token-0001", "next": f"/console/orders/{order_id}"}) as r:
                console = await r.text()
                assert r.status == 200, console

        async def exported() -> bool:
            mine = {s["span_id"] for s in receiver.spans}
            return {d["span_id"] for d in docs} <= mine

        await eventually(exported, timeout=20)  # BatchSpanProcessor: every 5 s
        worker_log = "".join(p.read_text(errors="replace") for p in env.hub.logs if p.exists())

    by_id = {d["span_id"]: d for d in docs}
    assert documents < len(docs) / 2, (documents, len(docs))  # grouped per order and flush
    # one trace: every span of the order, from every hop, carries the envelope's trace id — the partner's
    assert {d["trace_id"] for d in docs} == {trace_id} and trace_id == PARTNER.split("-")[1]
    services = {d["service"] for d in docs}
    assert {"hub.intake", "hub.router", "hub.engine", "hub.delivery", "esop", "resource", "construction"} <= services
    # parents: intake → router → engine (order.received) → delivery → the partner call
    (intake,) = [d for d in docs if d["service"] == "hub.intake" and d["operation"] == "order.received"]
    (router,) = [d for d in docs if d["service"] == "hub.router"]
    received = [d for d in docs if d["service"] == "hub.engine" and d["operation"] == "order.received"]
    assert intake["parent_id"] == PARTNER.split("-")[2]  # the partner's span, not stored here: the root
    assert router["parent_id"] == intake["span_id"] and received[0]["parent_id"] == router["span_id"]
    for d in docs:
        if d["service"] == "hub.delivery":
            assert by_id[d["parent_id"]]["service"] == "hub.engine", d
        elif d["service"] in ("esop", "resource", "construction", "ip_workbench"):
            assert by_id[d["parent_id"]]["service"] == "hub.delivery", (d, by_id[d["parent_id"]])
        elif d["service"] == "hub.engine" and d["operation"] == "call.result":
            assert by_id[d["parent_id"]]["service"] == "hub.delivery", d
    # callbacks come back into the same trace, and the engine's span of each names the callback's
    callbacks = [d for d in docs if d["service"] == "hub.intake" and d["operation"] == "callback"]
    assert callbacks, services
    cb_ids = {d["span_id"] for d in callbacks}
    assert any(d["service"] == "hub.engine" and d["operation"] == "callback" and d["parent_id"] in cb_ids
               for d in docs)
    (close,) = [d for d in docs if d["service"] == "esop" and d["operation"] == "close_report"]
    assert close["outcome"] == "ok" and close["duration_ms"] > 0
    # the CLI shows the same chain, each span after its parent
    assert shown["trace_ids"] == [trace_id] and {s["span_id"] for s in shown["spans"]} == set(by_id)
    assert [s["span_id"] for s in api["spans"]] == [s["span_id"] for s in shown["spans"]]
    seen: set[str] = set()
    for s in shown["spans"]:
        assert s["parent_id"] not in by_id or s["parent_id"] in seen, s
        seen.add(s["span_id"])
    assert "close_report" in table and "hub.router" in table
    # the console's order page has the same chain, one row per span
    assert console.count("data-span=") == len(docs) and 'id="trace"' in console
    assert all(f'data-span="{d["span_id"]}"' in console for d in docs)
    # issue 17 §3: no customer name, phone, ID number in a span — summary, export, CLI
    found = leaks("order_traces", json.dumps(docs, default=str, ensure_ascii=False))
    found += leaks("OTLP export", "".join(b.decode("utf-8", errors="replace") for b in receiver.bodies))
    found += leaks("hub orders trace", table + json.dumps(shown, ensure_ascii=False))
    found += leaks("console order page trace", console[console.index('id="trace"'):])
    assert not found, found
    assert {k for s in receiver.spans for k in s["attributes"]} <= {
        "hub.service", "hub.operation", "hub.order_id", "hub.outcome", "hub.error"}
    assert "order_traces:" not in worker_log  # no summary batch was lost


async def test_a_collector_that_never_answers_does_not_hold_the_hubs_stop(settings: Settings) -> None:
    from aiohttp import web

    from app.runtime import Runtime

    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()  # answers only once the test is over
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/traces", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        rt = Runtime(settings.model_copy(update={"otlp_endpoint": f"http://127.0.0.1:{port}"}))
        await rt.start()
        with tracing.hop(TraceContext(), "hub.engine", "order.received", "ord-t2"):
            pass
        # the summary is written and the stop returns although the export hangs (the hub's stop: 10 s)
        await asyncio.wait_for(rt.stop(), 8)
    finally:
        release.set()
        await runner.cleanup()
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
    assert [s["operation"] for s in await tracing.spans_of(client[settings.mongo_db], "ord-t2")] == ["order.received"]
    client.close()


async def test_a_soap_partners_traceparent_is_continued(settings: Settings, aiohttp_client: Any) -> None:
    from hub import topics
    from tests.integration.test_soap_inbound import call, serve, work_order, zeep_client
    from tests.support import topic_envelopes

    client = await serve(aiohttp_client, settings)
    zc = await asyncio.to_thread(zeep_client, client)
    zc.transport.session.headers["traceparent"] = PARTNER  # the partner's own span sends the call
    answer = await call(zc, "receiveWorkOrder", **work_order("S-TRACE-1"))
    assert answer.resultCode == "0"
    (env,) = await topic_envelopes(settings, topics.inbound(settings.topic_prefix, "esop"), expect=1)
    _, partner_trace_id, partner_span, _ = PARTNER.split("-")
    assert env.trace.trace_id == partner_trace_id and partner_span not in env.trace.traceparent

    async def intake_span() -> list[dict[str, Any]]:
        return await tracing.spans_of(client.app[RUNTIME].db, answer.orderId)

    (span,) = await eventually(intake_span, timeout=10)
    assert (span["service"], span["trace_id"], span["parent_id"]) == ("hub.intake", partner_trace_id, partner_span)
    assert env.trace.traceparent.split("-")[2] == span["span_id"]  # the router's span will be its child
