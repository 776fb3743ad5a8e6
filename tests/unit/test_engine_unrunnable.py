"""Issue 8 item 2, the late case: an order accepted before its blueprint was removed. The engine
fails it with the reason on the document *and* tells the origin partner through its close-report
(never a silent ``failed``)."""

from __future__ import annotations

from flows.engine import Engine
from hub.envelope import Envelope
from tests.unit.flows_engine_test import make_engine


def unrunnable(engine: Engine, source: str) -> tuple[dict, list[tuple[str, Envelope]]]:
    env = Envelope(type="order.received", source=source, protocol="rest", correlation_id="ord-9",
                   idempotency_key=f"order:{source}:EXT-9:change", product="internet_line", scenario="change",
                   payload={"external_order_id": "EXT-9", "product": "internet_line", "scenario": "change",
                            "customer": {"name": "n"}})
    doc, step = engine.new_order(env)
    return doc, step.outbox


def test_origin_with_a_close_report_gets_a_failure_report() -> None:
    doc, outbox = unrunnable(make_engine(), "esop")
    assert doc["status"] == "failed"
    assert doc["outcome"] == "no blueprint for product 'internet_line' scenario 'change'"
    ((topic, call),) = outbox
    assert topic == "t.out.esop"
    assert call.payload["operation"] == "close_report" and call.payload["partner"] == "esop"
    request = call.payload["request"]
    assert (request["orderId"], request["hubOrderId"], request["resultCode"]) == ("EXT-9", "ord-9", "0")
    assert "no blueprint" in request["resultDesc"]
    (rec,) = doc["calls"]  # the report is on the order like any call, so its outcome is visible
    assert rec["operation"] == "close_report" and rec["stage"] == "intake"


def test_origin_without_a_close_report_only_gets_the_reason_on_the_document() -> None:
    doc, outbox = unrunnable(make_engine(), "boss")  # BOSS drops files; it declares no close_report
    assert doc["status"] == "failed" and "no blueprint" in doc["outcome"]
    assert outbox == []
