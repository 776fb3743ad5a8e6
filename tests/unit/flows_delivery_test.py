"""Delivery building blocks: partner success rules, request templates, the keyed work pool, and
both sinks against the real simulator server (loopback, no mocks)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from app.delivery import build_sink
from connectors.context import ConnectorContext
from connectors.registry import load_builtins
from hub.envelope import Envelope
from hub.partners import load_partners
from hub.retry import RetryPolicy, SuccessRule
from hub.settings import PROJECT_ROOT, load_settings
from hub.templates import render
from hub.workpool import KeyedPool
from simulators.server import STATE, build_app
from simulators.state import Control

ESOP = SuccessRule(field="checkResult", equals="1", error_field="parameterValue")
GROUP = SuccessRule(http_status=[201], error_field="parameterValue")
RESOURCE = SuccessRule(field="code", equals="0", error_field="msg")


@pytest.mark.parametrize("rule, status, body, ok, error", [
    (ESOP, None, {"checkResult": 1, "parameterValue": "ok"}, True, None),
    (ESOP, None, {"checkResult": 0, "parameterValue": "客户信息不全"}, False, "checkResult=0: 客户信息不全"),
    (GROUP, 201, {}, True, None),
    (GROUP, 200, {"parameterValue": "dup"}, False, "HTTP 200: dup"),
    (RESOURCE, 200, {"code": "0", "msg": "ok"}, True, None),
    (RESOURCE, 200, {"code": "1", "msg": "资源不足"}, False, "code='1': 资源不足"),
    (RESOURCE, 200, {"msg": "no code"}, False, "code=None: no code"),
])
def test_partner_success_rules(rule: SuccessRule, status: int | None, body: Any, ok: bool, error: str | None) -> None:
    assert rule.judge(status, body) == (ok, error)


def test_policy_rejects_inverted_backoff() -> None:
    with pytest.raises(ValueError, match="backoff_max_s"):
        RetryPolicy(backoff_initial_s=5, backoff_max_s=1)


def test_templates_keep_types_and_only_read_paths() -> None:
    ctx = {"order": {"bandwidth_mbps": 100, "addresses": [{"city": "杭州"}]}, "order_id": "ord-1"}
    tpl = {"bw": "{order.bandwidth_mbps}", "text": "{order_id}/{order.bandwidth_mbps}Mb", "list": "{order.addresses}",
           "missing": "{order.nothing}", "fixed": 1, "code": "{__class__.__mro__}"}
    out = render(tpl, ctx)
    assert out == {"bw": 100, "text": "ord-1/100Mb", "list": [{"city": "杭州"}], "missing": None, "fixed": 1,
                   "code": None}


async def test_keyed_pool_orders_per_key_and_runs_keys_in_parallel() -> None:
    pool = KeyedPool(limit=8, name="t")
    seen: list[tuple[str, int]] = []
    acked: list[tuple[str, int]] = []
    running = 0
    peak = 0

    async def work(key: str, n: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (3 - n))  # later items finish faster: order must still hold per key
        seen.append((key, n))
        running -= 1

    for n in range(3):
        for key in ("a", "b", "c"):
            await pool.submit(key, lambda k=key, n=n: work(k, n), lambda k=key, n=n: _ack(acked, k, n))
    await pool.drain()
    for key in ("a", "b", "c"):
        assert [n for k, n in seen if k == key] == [0, 1, 2]
    assert peak >= 3 and len(acked) == 9


async def _ack(acked: list[tuple[str, int]], key: str, n: int) -> None:
    acked.append((key, n))


async def test_keyed_pool_runs_a_failed_handler_again_with_backoff_and_acks_only_after_it_worked() -> None:
    """Issue 10 §4: a handler that raised (MongoDB down) is redelivered, not acked; the key's next
    event waits behind it."""
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    pool = KeyedPool(limit=4, name="t", sleep=no_wait)
    runs: list[str] = []
    acked: list[tuple[str, int]] = []

    async def flaky() -> None:
        runs.append("first")
        if runs.count("first") < 4:
            raise ConnectionError("mongo down")

    async def second() -> None:
        runs.append("second")

    await pool.submit("a", flaky, lambda: _ack(acked, "a", 0))
    await pool.submit("a", second, lambda: _ack(acked, "a", 1))
    await pool.drain()
    assert runs == ["first"] * 4 + ["second"]
    assert acked == [("a", 0), ("a", 1)]
    assert waits == [0.2, 0.4, 0.8]


def _context(partner: str) -> ConnectorContext:
    """What the delivery agent hands a partner's sink (no database needed by REST or SOAP sinks)."""
    return ConnectorContext(load_settings().model_copy(update={"config_dir": PROJECT_ROOT / "config"}),
                            f"deliver-{partner}")


def _call(operation: str, request: dict[str, Any], visit: int = 1) -> Envelope:
    """A call envelope; another ``visit`` is another call (the simulators dedupe a key they accepted)."""
    return Envelope(type="call.request", source="hub", protocol="soap", correlation_id="ord-1",
                    idempotency_key=f"call:ord-1:{operation}" + (f"#{visit}" if visit > 1 else ""),
                    payload={"operation": operation, "request": request})


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> Any:
    server = TestServer(build_app(PROJECT_ROOT / "config"))
    await server.start_server()
    monkeypatch.setenv("HUB_SIM_URL", str(server.make_url("")).rstrip("/"))
    yield server
    await server.close()


def _partners() -> dict[str, Any]:
    """Partner YAML parsed and the connector packages imported (~300 ms CPU the first time) in a
    thread, as the hub does at start: not on the test's event loop."""
    load_builtins()
    return load_partners(PROJECT_ROOT / "config")


async def test_soap_sink_calls_notify_order_result_and_applies_check_result(sim: TestServer, tmp_path: Path) -> None:
    partners = await asyncio.to_thread(_partners)  # after HUB_SIM_URL points at the test server
    sink = build_sink(partners["esop"], _context("esop"))
    request = {"orderId": "E-1", "hubOrderId": "ord-1", "resultCode": "1", "finishTime": "2026-01-01T00:00:00"}
    try:
        ok = await sink.deliver(_call("close_report", request))
        assert ok.ok and ok.response == {"checkResult": 1, "parameterValue": "success"}
        state = sim.app[STATE]
        assert state.partner("esop").calls[0].idempotency_key == "call:ord-1:close_report"
        state.partner("esop").control = Control(mode="error")
        rejected = await sink.deliver(_call("close_report", request, 2))
        assert (rejected.ok, rejected.retryable) == (False, False) and "ESOP模拟失败" in (rejected.error or "")
        state.partner("esop").control = Control(mode="http_error")
        fault = await sink.deliver(_call("close_report", request, 3))
        assert (fault.ok, fault.retryable, fault.status) == (False, True, "fault")
    finally:
        await sink.stop()


async def test_simulators_answer_a_repeated_key_with_the_first_answer_and_count_the_duplicate(
        sim: TestServer) -> None:
    """Issue 10: 'no partner sees a call twice' is asserted on ``GET /_calls`` ``duplicates``; a
    partner dedupes what it accepted (first answer, no second callback), a refused request is no
    duplicate of its retry."""
    partners = await asyncio.to_thread(_partners)
    rest, soap = build_sink(partners["resource"], _context("resource")), build_sink(partners["esop"], _context("esop"))
    state = sim.app[STATE]
    close = {"orderId": "E-1", "hubOrderId": "ord-1", "resultCode": "1", "finishTime": "2026-01-01T00:00:00"}
    try:
        first = await rest.deliver(_call("resource_entry", {"orderId": "ord-1"}))
        state.partner("resource").control = Control(mode="error")  # a repeat is not processed again
        again = await rest.deliver(_call("resource_entry", {"orderId": "ord-1"}))
        assert first.ok and again.ok and again.response == first.response  # the same R-… reference
        state.partner("esop").control = Control(mode="http_error")
        assert not (await soap.deliver(_call("close_report", close))).ok  # refused: no side effect
        state.partner("esop").control = Control(mode="ok")
        assert (await soap.deliver(_call("close_report", close))).ok  # its retry: accepted once
        assert (await soap.deliver(_call("close_report", close))).ok  # sent again: answered, counted
        async with aiohttp.ClientSession() as http, http.get(sim.make_url("/_calls")) as got:
            stats = await got.json()
        assert stats["duplicates"] == {"resource": {"call:ord-1:resource_entry": 2},
                                       "esop": {"call:ord-1:close_report": 2}}
        assert [c.answered for c in state.partner("resource").calls] == ["ok", "duplicate"]
        async with aiohttp.ClientSession() as http, http.post(sim.make_url("/_reset")) as done:
            assert done.status == 200
        assert state.duplicates() == {}
    finally:
        await rest.stop()
        await soap.stop()


async def test_rest_sink_classifies_answers(sim: TestServer) -> None:
    partners = await asyncio.to_thread(_partners)
    sink = build_sink(partners["group"], _context("group"))
    state = sim.app[STATE]
    report = {"external_order_id": "G-1", "stage_title": "业务受理", "desc_outline": 1,
              "progress_code": "B001processing"}
    try:
        ok = await sink.deliver(_call("progress_report", report))
        assert ok.ok and ok.response["http_status"] == 201
        assert state.partner("group").calls[0].body["descOutline"] == 1  # mapped by the partner's template
        state.partner("group").control = Control(mode="error")
        bad = await sink.deliver(_call("progress_report", report, 2))
        assert (bad.ok, bad.retryable) == (False, False) and "一编模拟失败" in (bad.error or "")
        state.partner("group").control = Control(mode="http_error")
        assert (await sink.deliver(_call("progress_report", report, 3))).retryable
        state.partner("group").control = Control(mode="down")
        down = await sink.deliver(_call("progress_report", report, 4))
        assert (down.ok, down.retryable, down.status) == (False, True, "error")
    finally:
        await sink.stop()
