"""What lands on a ``.dlq`` topic, read back from the real broker: keyed by order id (else a stable
origin key), self-describing headers, origin always filled — for envelope letters, raw records and
an SFTP file rejection (the exact call the SFTP source makes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.runtime import Runtime
from hub import topics
from hub.deadletter import DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import ValidationFailed
from hub.settings import PROJECT_ROOT
from routes.loader import load_route_file
from routes.pipeline import RouteEmit
from tests.support import read_topic

pytestmark = pytest.mark.integration
ORIGIN = {"partner", "route", "file", "topic", "partition", "offset"}


def headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def one_record(runtime: Runtime, source_topic: str) -> tuple[Any, dict[str, Any]]:
    (record,) = await read_topic(runtime.settings, topics.dead_letter(source_topic), expect=1, wait=8)
    return record, json.loads(record.value)


async def test_envelope_letter_is_keyed_by_order_id_with_self_describing_headers(runtime: Runtime) -> None:
    assert runtime.db is not None
    topic = topics.outbound(runtime.settings.topic_prefix, "esop")
    env = Envelope(type="call.request", source="hub", protocol="soap", correlation_id="ord-42",
                   idempotency_key="call:ord-42:close_out:close_report", payload={"operation": "close_report"})
    letter = await DeadLetters(runtime.db, runtime.producer).publish(DeadLetter.for_envelope(
        topic, env, "SOAP fault", partner="esop", error_class="RetriesExhausted",
        origin={"topic": topic, "partition": 0, "offset": 3, "worker": "w1"}))

    record, value = await one_record(runtime, topic)
    assert record.key == b"ord-42"  # not the dead-letter id
    h = headers(record)
    assert h["hub-schema"] == "deadletter/v1" and h["content-type"] == "application/json"
    assert (h["hub-dead-letter-id"], h["hub-source-topic"], h["hub-error-class"]) == (
        letter.id, topic, "RetriesExhausted")
    assert (h["hub-order-id"], h["hub-partner"], h["hub-idempotency-key"]) == (
        "ord-42", "esop", "call:ord-42:close_out:close_report")
    assert value["id"] == letter.id and value["envelope"]["id"] == env.id
    assert set(value["origin"]) >= ORIGIN
    assert (value["origin"]["partner"], value["origin"]["topic"], value["origin"]["offset"]) == ("esop", topic, 3)


async def test_raw_record_takes_partner_from_the_topic_and_order_id_from_the_kafka_key(runtime: Runtime) -> None:
    assert runtime.db is not None
    topic = topics.inbound(runtime.settings.topic_prefix, "esop")
    await DeadLetters(runtime.db, runtime.producer).publish(DeadLetter.for_raw(
        topic, b"{not json", ValidationFailed("not a valid envelope"), key=b"ord-raw-1",
        origin={"partition": 1, "offset": 9, "agent": "intake-router"}))

    doc = await runtime.db["dead_letters"].find_one({"source_topic": topic})
    assert doc is not None and (doc["partner"], doc["order_id"]) == ("esop", "ord-raw-1")
    assert doc["origin"]["partner"] == "esop" and doc["origin"]["topic"] == topic
    record, value = await one_record(runtime, topic)
    assert record.key == b"ord-raw-1" and headers(record)["hub-partner"] == "esop"
    assert value["raw_value_b64"] and set(value["origin"]) >= ORIGIN


async def test_sftp_file_reject_is_keyed_by_route_and_file_and_names_no_fake_order(runtime: Runtime) -> None:
    assert runtime.db is not None
    prefix = runtime.settings.topic_prefix
    route = load_route_file(PROJECT_ROOT / "config" / "routes" / "boss-sftp-orders.yaml").route
    emit = RouteEmit(route, prefix=prefix, intake=None, producer=runtime.producer,
                     dead_letters=DeadLetters(runtime.db, runtime.producer))
    await emit.reject("file ORD_20261201.csv rejected: line 3: bad product", protocol="sftp", ref="ab12",
                      file="ORD_20261201.csv", prefix=prefix)

    doc = await runtime.db["dead_letters"].find_one({})
    assert doc is not None
    assert doc["order_id"] is None  # not "reject-<route>": there is no order
    assert doc["partner"] == emit.partner
    origin = doc["origin"]
    assert (origin["route"], origin["file"], origin["partner"]) == (route.name, "ORD_20261201.csv",  # type: ignore[attr-defined]
                                                                    emit.partner)
    record, _ = await one_record(runtime, doc["source_topic"])
    assert record.key == f"{route.name}/ORD_20261201.csv".encode()  # type: ignore[attr-defined]
    h = headers(record)
    assert "hub-order-id" not in h and h["hub-file"] == "ORD_20261201.csv" and h["hub-schema"] == "deadletter/v1"
