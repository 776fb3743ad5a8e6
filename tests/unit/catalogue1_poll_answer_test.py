"""A REST partner's result query (CAM 结果执行查询接口, CATALOGUE B.7) and a staged partner's interim
callbacks, as the engine sees them.

Why: the REST sink hands the delivery agent ``{http_status, body}``; the poll's "not yet" (``status:
processing``) and its final result are in the body. Read off the wrapper, the first "processing" answer
was taken for the result and failed the activation (found by tests/integration/test_catalogue1_partners.py:
GPON激活失败（未知原因）)."""

from __future__ import annotations

from flows.runtime.translate import to_event
from hub.envelope import Envelope

POLL = {"O:3:poll": {"type": "send_call", "call_id": "O:3:poll", "partner": "cam", "operation": "result_query",
                     "payload": {"call_id": "O:2:call"}, "purpose": "poll", "node": "activation"}}


def _answer(body: dict[str, object]) -> Envelope:
    return Envelope(type="call.result", source="cam", protocol="rest", correlation_id="O", idempotency_key="k",
                    payload={"call_id": "O:3:poll", "ok": True, "response": {"http_status": 200, "body": body}})


def test_a_rest_processing_answer_to_a_result_query_is_not_yet_a_result() -> None:
    event = to_event(_answer({"code": "0", "status": "processing", "ref": "O:2:call"}), None, None, POLL)
    assert event == {"type": "call_result", "call_id": "O:2:call", "pending": True, "via": "poll"}


def test_the_rest_result_of_a_result_query_is_its_body() -> None:
    body = {"code": "0", "ok": True, "status": "success", "activation_object": "GPON"}
    event = to_event(_answer(body), None, None, POLL)
    assert event == {"type": "call_result", "call_id": "O:2:call", "result": body, "via": "poll"}


def test_an_interim_staged_callback_is_not_yet_the_result_and_the_final_one_is() -> None:
    """A partner replying in stages (WSP's construction result: accepted → processing → completed) must not
    fail the step on its first, interim callback."""
    def callback(status: str) -> Envelope:
        return Envelope(type="callback", source="wsp", protocol="rest", correlation_id="O", idempotency_key=status,
                        payload={"callback_ref": "O:2:call", "status": status, "result": {"phase": status}})

    for interim in ("accepted", "processing"):
        assert to_event(callback(interim), None, None, {}) == {
            "type": "call_result", "call_id": "O:2:call", "pending": True, "via": "callback"}
    final = to_event(callback("completed"), None, None, {})
    assert final is not None and final["ok"] is True and final["result"]["phase"] == "completed"
