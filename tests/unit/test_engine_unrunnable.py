"""Issue 8 item 2, the late case: an order accepted before its blueprint was removed. The runtime
fails it with the reason on the document *and* tells the origin partner through its close-report
(never a silent ``failed``) — flows/runtime/document.py ``unrunnable_document``."""

from __future__ import annotations

from flows.runtime.document import unrunnable_document

FIELDS = {"partner": "esop", "external_order_id": "EXT-9", "order": {"external_order_id": "EXT-9"}}
REASON = "no blueprint for product 'internet_line' scenario 'change'"


def test_origin_with_a_close_report_gets_a_failure_report() -> None:
    doc = unrunnable_document("ord-9", FIELDS, "internet_line", "change", REASON, 1_700_000_000.0,
                              report_to_origin=True)
    assert doc["status"] == "failed" and doc["outcome"] == REASON
    (call,) = doc["outbox"]
    assert (call["type"], call["partner"], call["operation"]) == ("send_call", "esop", "close_report")
    request = call["payload"]
    assert (request["orderId"], request["hubOrderId"], request["resultCode"]) == ("EXT-9", "ord-9", "0")
    assert "no blueprint" in request["resultDesc"]
    assert list(doc["open_calls"]) == [call["id"]]  # the report is tracked like any call until answered


def test_origin_without_a_close_report_only_gets_the_reason_on_the_document() -> None:
    doc = unrunnable_document("ord-9", {**FIELDS, "partner": "boss"}, "internet_line", "change", REASON,
                              1_700_000_000.0, report_to_origin=False)  # BOSS drops files: no close_report
    assert doc["status"] == "failed" and "no blueprint" in doc["outcome"]
    assert doc["outbox"] == [] and doc["open_calls"] == {}
