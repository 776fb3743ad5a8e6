"""flows/runtime/document.py ``project``: what the order document tells a user about a held order.

Driven through the shipped blueprints with the pure engine (tests/unit/flows_shipped_test.py's
partner world), then projected as the runner does after each event."""

from __future__ import annotations

from typing import Any

from flows.runtime.document import new_document, project
from tests.unit.flows_graph_harness import Driver
from tests.unit.flows_shipped_test import DESIGN, INTERNET, LAN, Partners, order, shipped, submit


def projected(d: Driver) -> dict[str, Any]:
    doc = new_document("O1", {"partner": "esop"}, d.bp, d.now)
    doc["state"] = d.state
    project(doc, d.bp, d.now)
    return doc


def test_a_refused_gated_report_names_the_partner_its_error_and_the_retry() -> None:
    """G2: the order is held in the node; v1 said why on the order, so does v2."""
    d = Driver(shipped(LAN))
    Partners(d, reject_reports={("esop", "B001processing")}).answer(
        d.receive("O1", **order("5g_lan", "GRP-1")))
    doc = projected(d)
    assert doc["current_stage"] == "accept" and doc["status"] == "waiting"
    assert doc["blocked_reason"] == ("progress_report to esop failed at accept: esop 模拟失败; "
                                     "retry stage accept to send it again")

    Partners(d).answer(d.send({"type": "retry", "node": "accept"}, after=5))
    doc = projected(d)
    assert doc["current_stage"] == "core_design" and doc["blocked_reason"] is None


def test_a_refused_call_on_its_failure_path_names_the_partner_and_the_g3_text() -> None:
    d = Driver(shipped(INTERNET))
    p = Partners(d, reject_calls={("esop", "close_report")})
    p.answer(d.receive("O1", **order("internet_line", "ESOP-1")))
    p.answer(submit(d, "verification", {}))
    doc = projected(d)
    assert doc["current_stage"] == "failed_call"
    assert doc["blocked_reason"] == ("close_report at esop failed: ESOP报结失败（ESOP模拟失败），"
                                     "请解决问题后重新点击ESOP报结按钮")

    p.answer(submit(d, "failed_call", {}))  # the user clicks again: the close-report is sent again and accepted
    assert d.status == "completed"


def test_an_order_waiting_at_a_manual_stage_is_not_blocked() -> None:
    d = Driver(shipped(LAN))
    p = Partners(d)
    p.answer(d.receive("O1", **order("5g_lan", "GRP-1")))
    p.answer(submit(d, "core_design", DESIGN))
    doc = projected(d)
    assert doc["current_stage"] == "core_construction" and doc["blocked_reason"] is None
