"""Call-chain tracing: one OpenTelemetry span per hop of an order, linked across Kafka.

Why here, in the core: every hop (intake, router, engine, delivery, the partner call, callbacks)
has an envelope and nothing more in common, and the envelope already carries the W3C
``traceparent`` (hub/envelope.py). :func:`hop` starts a span as the *child of that traceparent*
and, while it runs, makes ``TraceContext.child()`` hand the span's own id on to every envelope it
causes — so the next consumer's span, in another process, names this one as its parent.

Where spans go (chosen by the composition root, ``app/runtime.py``, through :func:`install`):

* always to MongoDB ``order_traces`` (:class:`OrderTraceWriter`): per span its trace id, span id,
  parent id, service, operation, start, duration, outcome, error — buffered, and written once a
  second as one document per order holding that second's spans; never on the hot path;
* to an OTLP/HTTP collector (``BatchSpanProcessor``, its own thread) when ``HUB_OTLP_ENDPOINT`` is set.

Attributes are names only — service, operation, order id, outcome, error class. Never a payload
value, never an exception message (D.2.1: a message may quote a customer's name or phone).

Bounded: the collection has a TTL index (:data:`TTL_S`, 30 days after the span's start) and a
process writes at most :data:`MAX_SPANS_PER_ORDER` spans of one order (a polling order that runs
for weeks cannot fill it).

Cost, ``python -m bench.tracing --rounds 3`` (2-core VM, load 5-10; docs/operations.md "Call-chain
tracing"): a span ~48 µs with the summary, ~87 µs with OTLP too (12.7 µs for the old fresh-id
child context); the whole flow 4.9 orders/s either way, worker CPU 114 against 106 ms per order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace as otel
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from pydantic import ValidationError
from pymongo import ASCENDING, IndexModel
from pymongo.errors import PyMongoError
from pymongo.write_concern import WriteConcern

from hub.db import declare_indexes
from hub.envelope import CURRENT_SPAN, TraceContext
from hub.stopping import cancel_until_done

__all__ = ["COLLECTION", "Hop", "OrderTraceWriter", "Tracing", "grouped", "hop", "install", "installed", "mark",
           "partner_trace", "running", "spans_of"]

log = logging.getLogger(__name__)
COLLECTION = "order_traces"
TTL_S = 30 * 86400
MAX_SPANS_PER_ORDER = 1000
FLUSH_S = 1.0
FLUSH_AT = 500  # spans buffered: written at once, without waiting for the second
SHUTDOWN_S = 3.0
BUFFER_MAX = 20_000  # spans waiting while MongoDB is away: older ones are dropped (a summary, not a record)

SERVICE, OPERATION, ORDER, OUTCOME, ERROR = "hub.service", "hub.operation", "hub.order_id", "hub.outcome", "hub.error"

declare_indexes(
    COLLECTION,
    IndexModel([("order_id", ASCENDING), ("start", ASCENDING)], name="by_order"),
    IndexModel([("start", ASCENDING)], name="ttl_start", expireAfterSeconds=TTL_S),
)


class Hop:
    """The running span of one hop: ``trace`` is what the envelopes it produces carry."""

    __slots__ = ("outcome", "span", "trace")

    def __init__(self, span: otel.Span, trace: TraceContext) -> None:
        self.span = span
        self.trace = trace
        self.outcome = "ok"

    def fail(self, outcome: str, error: str | None = None) -> None:
        """The hop ended without an exception but did not succeed (a dead letter, a refused call)."""
        self.outcome = outcome
        if error:
            self.span.set_attribute(ERROR, error)


class Tracing:
    """One process's tracer (a provider with its processors); :func:`install` makes it current."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: otel.Tracer = provider.get_tracer("hub") if provider is not None else otel.NoOpTracer()
        self.writer: OrderTraceWriter | None = None

    @classmethod
    def build(cls, *, endpoint: str | None, service_name: str, db: Any | None,
              processors: Sequence[SpanProcessor] = ()) -> Tracing:
        """The composition root's tracer: the MongoDB summary when there is a database, OTLP/HTTP
        when ``endpoint`` is set, and any extra processors (tests: an in-memory exporter)."""
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        tracing = cls(provider)
        if db is not None:
            tracing.writer = OrderTraceWriter(db)
            provider.add_span_processor(tracing.writer)
        if endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            url = endpoint.rstrip("/")
            if not url.endswith("/v1/traces"):
                url += "/v1/traces"
            # a collector away: 8192 spans wait (a few seconds of a busy hub), then the SDK drops and
            # warns — once per 10 s, hub/kafka.py RateLimitFilter covers the "opentelemetry" loggers
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=5),
                                                           max_queue_size=8192, schedule_delay_millis=1000))
        for p in processors:
            provider.add_span_processor(p)
        return tracing

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
        if self.provider is not None:  # flushes the OTLP batch (a blocking HTTP post) in a thread; a
            # collector that does not answer must not hold the hub's stop (10 s in all): 3 s, then left
            try:
                await asyncio.wait_for(asyncio.to_thread(self.provider.shutdown), SHUTDOWN_S)
            except TimeoutError:
                log.warning("tracing: the OTLP exporter did not finish within %.0f s; its last spans are lost",
                            SHUTDOWN_S)


_current = Tracing()
_HOP: ContextVar[Hop | None] = ContextVar("hub_hop", default=None)


def install(tracing: Tracing) -> Tracing:
    """Make ``tracing`` the process's tracer (once per process, by ``app/runtime.py``); returns the
    previous one so a test can put it back."""
    global _current
    previous, _current = _current, tracing
    return previous


def installed() -> Tracing:
    return _current


Kind = Literal["server", "consumer", "client", "internal"]
_KINDS = {"server": SpanKind.SERVER, "consumer": SpanKind.CONSUMER, "client": SpanKind.CLIENT,
          "internal": SpanKind.INTERNAL}


def _parent(trace: TraceContext) -> Context:
    _, trace_id, span_id, flags = trace.traceparent.split("-")
    ctx = SpanContext(trace_id=int(trace_id, 16), span_id=int(span_id, 16), is_remote=True,
                      trace_flags=TraceFlags(int(flags, 16)))
    return otel.set_span_in_context(NonRecordingSpan(ctx))


def partner_trace(headers: Mapping[str, str] | None) -> TraceContext | None:
    """The partner's W3C ``traceparent`` (and ``tracestate``), so the order's trace continues the
    partner's own (REST and SOAP intake); a malformed or all-zero one is ignored, as W3C asks: a new trace."""
    raw = (headers or {}).get("traceparent")
    if not raw:
        return None
    state = (headers or {}).get("tracestate")
    try:
        trace = TraceContext(traceparent=raw.strip().lower(),
                             tracestate=state if state and len(state) <= 512 else None)
    except ValidationError:
        return None
    _, trace_id, span_id, _ = trace.traceparent.split("-")
    return None if trace_id == "0" * 32 or span_id == "0" * 16 else trace


def running(trace: TraceContext) -> TraceContext:
    """The running hop's context when it belongs to ``trace``'s trace (a wrapper inside the delivery's
    span: its parent is that span), else ``trace`` itself."""
    current = CURRENT_SPAN.get()
    if current is not None and current[0] == trace.trace_id:
        return TraceContext.model_construct(traceparent=current[1], tracestate=trace.tracestate)
    return trace


def mark(outcome: str, error: str | None = None) -> None:
    """The running hop (if any) did not succeed, though nothing was raised out of it."""
    h = _HOP.get()
    if h is not None:
        h.fail(outcome, error)


@contextmanager
def hop(trace: TraceContext, service: str, operation: str, order_id: str,
        kind: Kind = "consumer") -> Iterator[Hop]:
    """A span for one hop of order ``order_id``, child of ``trace``; inside it every
    ``TraceContext.child()`` of the same trace names this span as its parent.

    An exception marks the span ``error`` with the exception's *class* only and propagates."""
    span = _current.tracer.start_span(f"{service} {operation}", context=_parent(trace), kind=_KINDS[kind],
                                      attributes={SERVICE: service, OPERATION: operation, ORDER: order_id},
                                      record_exception=False, set_status_on_exception=False)
    sc = span.get_span_context()
    if span.is_recording():
        # built from the SDK's ints, so valid: model_construct skips the regex (a fifth of a span's cost)
        mine = TraceContext.model_construct(traceparent=f"00-{sc.trace_id:032x}-{sc.span_id:016x}-01",
                                            tracestate=trace.tracestate)
    else:  # no tracer installed: the old behaviour, a fresh span id per caused envelope
        mine = trace.child()
    h = Hop(span, mine)
    token = CURRENT_SPAN.set((mine.trace_id, mine.traceparent))
    hop_token = _HOP.set(h)
    try:
        yield h
    except BaseException as exc:
        h.outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
        span.set_attribute(ERROR, type(exc).__name__)
        raise
    finally:
        CURRENT_SPAN.reset(token)
        _HOP.reset(hop_token)
        span.set_attribute(OUTCOME, h.outcome)
        if h.outcome != "ok":
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class OrderTraceWriter(SpanProcessor):
    """The per-order summary: ``on_end`` (the event loop's thread, a few µs) only appends a small
    dict; a task writes the buffer once a second with one unordered ``insert_many`` (``w: 1``, not
    journaled — a summary, not worth an fsync), **one document per order per flush** holding that
    second's spans of the order. Why grouped: an internet-line order has ~29 spans over a few
    seconds, so 3-6 documents instead of 29 — each document costs SecantusDB three index entries
    (``_id``, ``by_order``, the TTL), and the database is the hub's bottleneck (bench/flow.py)."""

    def __init__(self, db: Any) -> None:
        self.collection = db[COLLECTION].with_options(write_concern=WriteConcern(w=1, j=False))
        self.buffer: list[dict[str, Any]] = []
        self.per_order: OrderedDict[str, int] = OrderedDict()
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        order = attrs.get(ORDER)
        if not order or span.context is None or span.start_time is None or span.end_time is None:
            return
        order = str(order)
        seen = self.per_order.pop(order, 0) + 1
        self.per_order[order] = seen
        if len(self.per_order) > 10_000:
            self.per_order.popitem(last=False)
        if seen > MAX_SPANS_PER_ORDER or len(self.buffer) >= BUFFER_MAX:
            self.dropped += 1
            return
        parent = span.parent
        err = attrs.get(ERROR)
        self.buffer.append({
            "span_id": f"{span.context.span_id:016x}", "order_id": order,
            "trace_id": f"{span.context.trace_id:032x}",
            "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
            "service": attrs.get(SERVICE), "operation": attrs.get(OPERATION),
            "start": datetime.fromtimestamp(span.start_time / 1e9, UTC),
            "duration_ms": round((span.end_time - span.start_time) / 1e6, 3),
            "outcome": attrs.get(OUTCOME, "ok"), "error": str(err) if err else None,
        })
        self._ensure_task()
        if len(self.buffer) >= FLUSH_AT and self._wake is not None:
            self._wake.set()

    def _ensure_task(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a span ended outside a loop (a CLI's sync code): written by close()/flush()
            return
        self._loop, self._wake = loop, asyncio.Event()
        self._task = loop.create_task(self._run(), name="order-traces")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), FLUSH_S)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what is buffered now (tests and shutdown call it; the task once a second)."""
        while self.buffer:
            batch, self.buffer = self.buffer[:FLUSH_AT * 4], self.buffer[FLUSH_AT * 4:]
            try:
                await self.collection.insert_many(grouped(batch), ordered=False)
            except PyMongoError as exc:  # duplicates (a re-sent batch) are fine; anything else: logged, dropped
                if "E11000" not in str(exc):
                    log.warning("order_traces: %d spans not written (%s)", len(batch), type(exc).__name__)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)
            self._task = None
        await self.flush()

    def shutdown(self) -> None:  # the provider's; the async close() did the work
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def grouped(spans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``order_traces`` document per order: ``_id`` its first span's id (unique, so a re-sent
    batch is a duplicate), ``start`` the earliest (the TTL's clock), ``spans`` without the order id."""
    by_order: dict[str, list[dict[str, Any]]] = {}
    for sp in spans:
        by_order.setdefault(sp["order_id"], []).append({k: v for k, v in sp.items() if k != "order_id"})
    return [{"_id": items[0]["span_id"], "order_id": order, "start": min(i["start"] for i in items), "spans": items}
            for order, items in by_order.items()]


async def spans_of(db: Any, order_id: str) -> list[dict[str, Any]]:
    """Every stored span of an order (its documents flattened), oldest first."""
    docs = await db[COLLECTION].find({"order_id": order_id}, {"spans": 1}).sort("start", 1).to_list(
        MAX_SPANS_PER_ORDER)
    spans = [sp for d in docs for sp in d.get("spans") or []]
    spans.sort(key=lambda sp: sp["start"])
    return spans
