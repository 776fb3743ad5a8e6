"""Dead-letter shape without servers: partner from the topic name, origin always filled, the
``.dlq`` key (order id, else a stable origin key, never the letter id when an origin exists)."""

from __future__ import annotations

from hub.deadletter import ORIGIN_FIELDS, DeadLetter
from hub.envelope import Envelope
from hub.errors import ValidationFailed
from hub.topics import partner_of


def test_partner_is_read_from_the_topic_name_even_with_a_dotted_prefix() -> None:
    assert partner_of("hub.in.esop") == "esop"
    assert partner_of("prod.east.out.group") == "group"
    assert partner_of("hub.out.group.dlq") == "group"
    assert partner_of("hub.orders") is None


def test_raw_record_without_key_is_keyed_by_topic_partition_offset_and_origin_is_complete() -> None:
    letter = DeadLetter.for_raw("hub.orders", b"x", ValidationFailed("bad"), origin={"partition": 2, "offset": 40})
    assert letter.order_id is None and letter.partner == "hub"
    assert set(ORIGIN_FIELDS) <= set(letter.origin) and letter.origin["topic"] == "hub.orders"
    assert letter.kafka_key() == b"hub.orders/2/40"


def test_route_and_file_come_from_the_envelope_headers_of_a_file_record() -> None:
    env = Envelope(type="order.received", source="boss", protocol="sftp", correlation_id="ord-7",
                   idempotency_key="k", headers={"hub-route": "boss-sftp-orders", "file": "ORD_1.csv", "line": "3"})
    letter = DeadLetter.for_envelope("hub.in.boss", env, "schema")
    assert (letter.origin["route"], letter.origin["file"], letter.origin["partner"]) == (
        "boss-sftp-orders", "ORD_1.csv", "boss")
    assert letter.kafka_key() == b"ord-7" and letter.idempotency_key == "k"
