"""The envelope's Kafka serialisation is a contract between every producer and consumer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hub.envelope import SCHEMA, Envelope, TraceContext, new_id
from hub.errors import ValidationFailed


def sample() -> Envelope:
    return Envelope(
        type="order.received",
        source="esop",
        protocol="rest",
        correlation_id="ord-1",
        idempotency_key="order:esop:E1:open",
        product="internet_line",
        scenario="open",
        payload={"customer": {"name": "张三"}, "addresses": [{"city": "杭州", "detail": "西湖区"}], "n": 1.5},
        headers={"partner-request-id": "r-1"},
        created_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        attempt=2,
    )


def test_round_trip_through_kafka_bytes_is_lossless() -> None:
    env = sample()
    back = Envelope.from_kafka(env.kafka_value(), env.kafka_headers())
    assert back == env
    assert back.payload["customer"]["name"] == "张三"


def test_key_is_the_order_id_so_one_order_stays_on_one_partition() -> None:
    assert sample().kafka_key() == b"ord-1"


def test_headers_carry_routing_fields_and_trace() -> None:
    env = sample()
    headers = dict(env.kafka_headers())
    assert headers["hub-schema"] == SCHEMA.encode()
    assert headers["hub-id"] == env.id.encode()
    assert headers["hub-type"] == b"order.received"
    assert headers["hub-correlation-id"] == b"ord-1"
    assert headers["hub-idempotency-key"] == b"order:esop:E1:open"
    assert headers["hub-attempt"] == b"2"
    assert headers["traceparent"] == env.trace.traceparent.encode()


def test_value_is_self_contained_json() -> None:
    env = sample()
    doc = json.loads(env.kafka_value())
    assert doc["correlation_id"] == "ord-1" and doc["trace"]["traceparent"].startswith("00-")
    # headers are copies: the value alone reconstructs the envelope
    assert Envelope.from_kafka(env.kafka_value()) == env


def test_unknown_schema_and_garbage_are_rejected_clearly() -> None:
    with pytest.raises(ValidationFailed, match="unsupported envelope schema"):
        Envelope.from_kafka(sample().kafka_value(), [("hub-schema", b"envelope/v9")])
    with pytest.raises(ValidationFailed) as info:
        Envelope.from_kafka(b'{"type": "x"}')
    fields = {e["field"] for e in info.value.errors}
    assert {"source", "protocol", "correlation_id", "idempotency_key"} <= fields
    with pytest.raises(ValidationFailed):
        Envelope.from_kafka(None)


def test_caused_envelope_keeps_order_and_trace_but_new_span() -> None:
    parent = sample()
    child = parent.caused(type="call.request", idempotency_key="call:1")
    assert child.correlation_id == parent.correlation_id
    assert child.causation_id == parent.id
    assert child.trace.trace_id == parent.trace.trace_id
    assert child.trace.traceparent != parent.trace.traceparent
    assert child.id != parent.id


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids[0][:12] <= ids[-1][:12]


def test_trace_context_validates_w3c_format() -> None:
    with pytest.raises(ValueError):
        TraceContext(traceparent="not-a-trace")


def test_ids_carry_the_version_nibble_and_a_forked_child_does_not_repeat_its_parents() -> None:
    import os
    import uuid

    value = uuid.UUID(new_id())
    assert value.hex[12] == "7" and len(value.hex) == 32  # the version nibble, as the ids always had
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its generator is reseeded at fork, so its next ids differ from the parent's
        os.write(write, "".join(new_id()[12:] for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    parent = "".join(new_id()[12:] for _ in range(5))
    child = os.read(read, 4096).decode()
    os.waitpid(pid, 0)
    assert child and child != parent
