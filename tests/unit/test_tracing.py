"""hub/tracing.py: spans of one hop, their parents across envelopes, and what they may carry —
checked with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext

from hub import tracing
from hub.envelope import Envelope, TraceContext


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    previous = tracing.install(tracing.Tracing.build(endpoint=None, service_name="test", db=None,
                                                     processors=[SimpleSpanProcessor(exporter)]))
    try:
        yield exporter
    finally:
        tracing.install(previous)


def _ctx(span: ReadableSpan) -> SpanContext:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx


def _order() -> Envelope:
    return Envelope(type="order.received", source="esop", protocol="rest", correlation_id="ord-1",
                    idempotency_key="k1", payload={"customer": {"name": "张三", "phone": "13800000000"}})


def test_a_hop_is_the_child_of_the_envelopes_traceparent_and_hands_its_own_id_on(
        spans: InMemorySpanExporter) -> None:
    env = _order()
    parent_span_id = env.trace.traceparent.split("-")[2]
    with tracing.hop(env.trace, "hub.router", "route", env.correlation_id) as h:
        caused = env.caused(type="call.request", idempotency_key="k2")
    (span,) = spans.get_finished_spans()
    ctx = _ctx(span)
    assert f"{ctx.trace_id:032x}" == env.trace.trace_id
    assert span.parent is not None and f"{span.parent.span_id:016x}" == parent_span_id
    assert h.trace.traceparent == f"00-{env.trace.trace_id}-{ctx.span_id:016x}-01"
    assert caused.trace.traceparent == h.trace.traceparent  # the next hop's parent is this span
    assert dict(span.attributes or {}) == {"hub.service": "hub.router", "hub.operation": "route",
                                           "hub.order_id": "ord-1", "hub.outcome": "ok"}


def test_hops_chain_across_envelopes(spans: InMemorySpanExporter) -> None:
    env = _order()
    with tracing.hop(env.trace, "hub.intake", env.type, env.correlation_id, kind="server") as intake:
        env.trace = intake.trace
    with tracing.hop(env.trace, "hub.engine", env.type, env.correlation_id):
        call = env.caused(type="call.request", idempotency_key="k2")
    with tracing.hop(call.trace, "hub.delivery", "notify", call.correlation_id) as d, \
            tracing.hop(d.trace, "esop", "notify", call.correlation_id, kind="client"):
        pass
    intake_s, engine_s, partner_s, delivery_s = spans.get_finished_spans()
    assert {_ctx(s).trace_id for s in spans.get_finished_spans()} == {int(env.trace.trace_id, 16)}
    assert engine_s.parent is not None and engine_s.parent.span_id == _ctx(intake_s).span_id
    assert delivery_s.parent is not None and delivery_s.parent.span_id == _ctx(engine_s).span_id
    assert partner_s.parent is not None and partner_s.parent.span_id == _ctx(delivery_s).span_id


def test_an_exception_marks_the_span_with_its_class_never_its_message(spans: InMemorySpanExporter) -> None:
    env = _order()
    with pytest.raises(ValueError), tracing.hop(env.trace, "hub.engine", env.type, env.correlation_id):
        raise ValueError("customer 张三 13800000000 refused")
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["hub.outcome"] == "error" and span.attributes["hub.error"] == "ValueError"
    assert not span.events  # no recorded exception (its message could quote the customer)
    assert "张三" not in repr(dict(span.attributes)) and "13800000000" not in repr(dict(span.attributes))


def test_mark_records_an_outcome_without_an_exception(spans: InMemorySpanExporter) -> None:
    env = _order()
    with tracing.hop(env.trace, "hub.engine", env.type, env.correlation_id):
        tracing.mark("dead_lettered", "ConfigError")
    tracing.mark("ignored")  # no hop running: nothing to mark, no error
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None and span.attributes["hub.outcome"] == "dead_lettered"


def test_outside_a_hop_and_without_a_tracer_children_get_fresh_span_ids() -> None:
    previous = tracing.install(tracing.Tracing())
    try:
        trace = TraceContext()
        with tracing.hop(trace, "hub.router", "route", "ord-1") as h:
            assert h.trace.trace_id == trace.trace_id and h.trace.traceparent != trace.traceparent
        a, b = trace.child(), trace.child()
        assert a.trace_id == b.trace_id == trace.trace_id and a.traceparent != b.traceparent
    finally:
        tracing.install(previous)


def test_a_hop_of_another_trace_is_not_a_parent(spans: InMemorySpanExporter) -> None:
    other = TraceContext()
    with tracing.hop(TraceContext(), "hub.engine", "x", "ord-2"):
        child = other.child()
    assert child.traceparent.split("-")[2] not in {f"{_ctx(s).span_id:016x}"
                                                   for s in spans.get_finished_spans()}


def test_the_summary_groups_an_orders_spans_and_the_read_side_puts_each_after_its_parent() -> None:
    from datetime import UTC, datetime, timedelta

    from app.admin.traces import as_tree

    t0 = datetime(2026, 12, 2, tzinfo=UTC)

    def sp(span: str, parent: str | None, order: str, s: int) -> dict[str, object]:
        return {"span_id": span, "parent_id": parent, "order_id": order, "trace_id": "t", "service": "x",
                "operation": "y", "start": t0 + timedelta(seconds=s), "duration_ms": 1.0, "outcome": "ok",
                "error": None}

    spans = [sp("b", "a", "o1", 2), sp("a", "gone", "o1", 1), sp("z", None, "o2", 0), sp("c", "a", "o1", 3),
             sp("d", "b", "o1", 4)]
    docs = tracing.grouped(spans)
    assert [(d["_id"], d["order_id"], len(d["spans"])) for d in docs] == [("b", "o1", 4), ("z", "o2", 1)]
    assert docs[0]["start"] == t0 + timedelta(seconds=1) and "order_id" not in docs[0]["spans"][0]
    tree = as_tree(docs[0]["spans"])
    # "a"'s parent is not stored: a root; then depth first, siblings by start
    assert [(r["span_id"], r["depth"]) for r in tree] == [("a", 0), ("b", 1), ("d", 2), ("c", 1)]


def test_a_partners_traceparent_is_continued_and_a_bad_one_ignored() -> None:
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    trace = tracing.partner_trace({"traceparent": f"00-{tid}-{sid}-01", "tracestate": "vendor=1"})
    assert trace is not None and trace.trace_id == tid and trace.tracestate == "vendor=1"
    for bad in (f"00-{'0' * 32}-{sid}-01", f"00-{tid}-{'0' * 16}-01", "ff-x", f"01-{tid}-{sid}-01", ""):
        assert tracing.partner_trace({"traceparent": bad}) is None, bad
    assert tracing.partner_trace(None) is None
    assert tracing.partner_trace({"traceparent": f"00-{tid}-{sid}-01", "tracestate": "x" * 600}).tracestate is None  # type: ignore[union-attr]


async def test_each_attempt_is_a_span_of_the_partner_under_the_delivery_and_the_sink_sends_its_id(
        spans: InMemorySpanExporter) -> None:
    from typing import ClassVar

    from connectors.base import Outcome
    from connectors.delivery.tracing import Traced

    class Fake:  # the transport: what the partner would have received
        name: ClassVar[str] = "fake"
        sent: ClassVar[list[str]] = []

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def deliver(self, envelope: Envelope) -> Outcome:
            self.sent.append(envelope.trace.traceparent)
            return Outcome(ok=len(self.sent) > 1, retryable=len(self.sent) == 1)

    sink = Traced(Fake(), "esop")
    call = _order().caused(type="call.request", idempotency_key="c1", payload={"operation": "close_report"})
    with tracing.hop(call.trace, "hub.delivery", "close_report", call.correlation_id) as d:
        first, second = await sink.deliver(call), await sink.deliver(call)
    assert not first.ok and second.ok
    a1, a2, delivery = spans.get_finished_spans()
    assert [dict(s.attributes or {}).get("hub.outcome") for s in (a1, a2, delivery)] == ["retryable", "ok", "ok"]
    for attempt, sent in zip((a1, a2), Fake.sent, strict=True):
        assert attempt.name == "esop close_report"
        assert attempt.parent is not None and attempt.parent.span_id == _ctx(delivery).span_id
        assert sent.split("-")[2] == f"{_ctx(attempt).span_id:016x}"  # the partner got the attempt's span
    assert d.trace.trace_id == call.trace.trace_id
