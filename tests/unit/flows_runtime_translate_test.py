"""Envelopes → engine events (flows/runtime/translate.py): what each delivery answer means to the engine."""

from __future__ import annotations

from typing import Any

from flows.graph.model import Blueprint
from flows.runtime.translate import to_event
from hub.envelope import Envelope

BP = Blueprint.model_validate({"name": "t", "start": "a", "nodes": {
    "a": {"kind": "call", "steps": [{"partner": "resource", "operation": "design_request", "mode": "callback"}],
          "next": "b"},
    "p": {"kind": "call", "steps": [{"partner": "cam", "operation": "activate", "mode": "poll",
                                     "poll_operation": "query"}], "next": "b"},
    "s": {"kind": "call", "steps": [{"partner": "esop", "operation": "close_report"}], "next": "b"},
    "b": {"kind": "end"}}})


def state(node: str, call_id: str) -> dict[str, Any]:
    return {"tokens": {"O:1:token": {"id": "O:1:token", "node": node, "wait": {"step": 0, "call_id": call_id}}}}


def result(call_id: str, **payload: Any) -> Envelope:
    return Envelope(type="call.result", source="x", protocol="rest", correlation_id="O", idempotency_key="k",
                    payload={"call_id": call_id, **payload})


def test_a_sync_answer_of_a_callback_step_only_says_accepted() -> None:
    event = to_event(result("O:2:call", ok=True, response={"code": "0"}), BP, state("a", "O:2:call"), {})
    assert event == {"type": "call_result", "call_id": "O:2:call", "pending": True, "via": "sync"}


def test_a_sync_step_gets_the_answer_as_its_result() -> None:
    event = to_event(result("O:2:call", ok=True, response={"checkResult": 1}), BP, state("s", "O:2:call"), {})
    assert event is not None and event["result"] == {"checkResult": 1, "ok": True} and event["ok"] is True


def test_a_partner_no_is_a_failed_result_but_an_unreachable_partner_is_not() -> None:
    no = to_event(result("O:2:call", ok=False, rejected=True, response={"checkResult": 0}, error="refused"),
                  BP, state("s", "O:2:call"), {})
    assert no is not None and no["ok"] is False and no["result"]["error"] == "refused"
    assert to_event(result("O:2:call", ok=False, error="timeout"), BP, state("s", "O:2:call"), {}) is None


def test_a_poll_answer_answers_the_call_it_queries() -> None:
    opened = {"O:5:poll": {"purpose": "poll", "payload": {"call_id": "O:2:call"}}}
    waiting = to_event(result("O:5:poll", ok=True, response={"status": "processing"}), BP, state("p", "O:2:call"),
                       opened)
    assert waiting == {"type": "call_result", "call_id": "O:2:call", "pending": True, "via": "poll"}
    done = to_event(result("O:5:poll", ok=True, response={"status": "success"}), BP, state("p", "O:2:call"), opened)
    assert done is not None and done["call_id"] == "O:2:call" and done["result"] == {"status": "success"}


def test_reports_and_callbacks() -> None:
    failed = to_event(result("O:3:report", ok=False, error="503"), BP, {}, {})
    assert failed == {"type": "report_result", "report_id": "O:3:report", "ok": False, "error": "503"}
    cb = Envelope(type="callback", source="resource", protocol="rest", correlation_id="O", idempotency_key="k",
                  payload={"callback_ref": "O:2:call", "status": "failed", "result": {"msg": "no port"}})
    assert to_event(cb, BP, {}, {}) == {"type": "call_result", "call_id": "O:2:call", "ok": False, "via": "callback",
                                        "result": {"msg": "no port", "ok": False}}
