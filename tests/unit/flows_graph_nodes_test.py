"""v2 engine, one node kind at a time, on small inline blueprints (pure, injected clock, no sleeps)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest
from pydantic import ValidationError

from flows.graph import NODE_KINDS, Blueprint, step
from flows.graph.model import NodeSpec
from flows.graph.nodes import Kind, register
from hub.errors import ConfigError, ValidationFailed
from tests.unit.flows_graph_harness import Driver, of_type, one


def bp(start: str, **nodes: dict[str, Any]) -> Blueprint:
    return Blueprint.model_validate({"name": "t", "start": start, "nodes": nodes})


END = {"kind": "end"}


def test_every_kind_is_registered_by_name() -> None:
    assert sorted(NODE_KINDS) == ["auto", "call", "choice", "end", "fusion_plan", "fusion_wait", "join",
                                  "parallel", "receive", "subflow", "timer", "user"]  # fusion_*: flows/fusion/kinds.py


def test_adding_a_kind_is_one_registration() -> None:
    class StampSpec(NodeSpec):
        kind: Literal["stamp"] = "stamp"
        waits: ClassVar[bool] = False

    class Stamp(Kind):
        name = "stamp"
        spec = StampSpec

        def enter(self, run: Any, token: dict[str, Any], spec: Any) -> None:
            run.data["stamped"] = run.now
            run.leave(token, spec.next)

    register(Stamp)
    try:
        d = Driver(bp("s", s={"kind": "stamp", "next": "e"}, e=END), now=5.0)
        d.receive()
        assert d.status == "completed" and d.state is not None and d.state["data"]["stamped"] == 5.0
        with pytest.raises(ValueError, match="registered twice"):
            register(Stamp)
    finally:
        del NODE_KINDS["stamp"]


def test_unknown_kind_and_unknown_target_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown node kind 'bogus'"):
        bp("a", a={"kind": "bogus"})
    with pytest.raises(ValidationError, match="a → nowhere"):
        bp("a", a={"kind": "auto", "next": "nowhere"})


def test_auto_sets_fields_and_choice_takes_the_first_matching_branch() -> None:
    b = bp("a", a={"kind": "auto", "set": {"n": "data.x * 2"}, "next": "c"},
           c={"kind": "choice", "transitions": [{"when": "data.n > 10", "to": "big"},
                                                {"when": "data.n > 4", "to": "mid"}], "next": "small"},
           big={**END, "reply": {"r": "'big'"}}, mid={**END, "reply": {"r": "'mid'"}},
           small={**END, "reply": {"r": "'small'"}})
    for x, expect in ((6, "big"), (3, "mid"), (1, "small")):
        d = Driver(b)
        cmds = d.receive(x=x)
        assert one(cmds, "reply")["payload"] == {"r": expect}


def test_call_sync_success_saves_the_result_and_failure_fails_the_order() -> None:
    b = bp("c", c={"kind": "call", "steps": [{"partner": "p", "operation": "op", "payload": {"id": "order_id"},
                                              "save": {"ref": "result.ref"}}], "next": "e"}, e=END)
    d = Driver(b)
    call = one(d.receive("X"), "send_call")
    assert call["payload"] == {"id": "X"} and call["call_id"].startswith("X:")
    assert d.send({"type": "call_result", "call_id": "other", "result": {"ok": True}}) == []  # not ours
    d.send({"type": "call_result", "call_id": call["call_id"], "result": {"ok": True, "ref": "R1"}})
    assert d.status == "completed" and d.state is not None and d.state["data"]["ref"] == "R1"
    d = Driver(b)
    call = one(d.receive("X"), "send_call")
    cmds = d.send({"type": "call_result", "call_id": call["call_id"], "result": {"ok": False}})
    assert d.status == "failed" and one(cmds, "finish")["reason"] == "c: call failed"


def test_call_cancel_sends_the_partners_cancel_for_a_pending_request() -> None:
    b = bp("c", c={"kind": "call", "steps": [{"partner": "p", "operation": "op", "mode": "callback",
                                              "cancel_operation": "revoke"}], "next": "e"}, e=END)
    d = Driver(b)
    call = one(d.receive(), "send_call")
    cmds = d.send({"type": "cancel", "reason": "withdraw"})
    revoke = one(cmds, "send_call")
    assert (revoke["operation"], revoke["purpose"], revoke["payload"]) == ("revoke", "cancel",
                                                                            {"call_id": call["call_id"]})
    assert d.status == "cancelled" and one(cmds, "reply")["payload"] == {"reason": "withdraw"}


def test_user_field_rules_type_regex_enum_list_length_required_and_defaults() -> None:
    b = bp("u", u={"kind": "user", "fields": [
        {"name": "n", "type": "int", "required": True},
        {"name": "code", "type": "str", "regex": "[A-Z]{3}"},
        {"name": "color", "enum": ["red", "blue"], "default": [{"when": "fields.n > 5", "value": "'blue'"},
                                                                {"value": "'red'"}]},
        {"name": "items", "type": "list", "min_items": 1, "max_items": 2},
        {"name": "dual", "required_when": "data.access in ['1', '4', '6']"},
    ], "next": "e"}, e=END)
    d = Driver(b)
    d.receive(access="4")
    cmds = d.send({"type": "submission", "node": "u", "fields": {"n": "7", "code": "ab", "color": "green",
                                                                   "items": [1, 2, 3]}})
    errors = one(cmds, "reply")["errors"]
    assert errors == [{"field": "n", "message": "must be int"},
                      {"field": "code", "message": "does not match [A-Z]{3}"},
                      {"field": "color", "message": "must be one of ['red', 'blue']"},
                      {"field": "items", "message": "at most 2 items"},
                      {"field": "dual", "message": "required"}]
    assert d.nodes() == ["u"]
    d.send({"type": "submission", "node": "u", "fields": {"n": 7, "code": "ABC", "items": [1], "dual": "是"},
            "user": {"id": "u9"}})
    assert d.status == "completed" and d.state is not None
    assert d.state["data"]["color"] == "blue" and d.state["data"]["_operators"]["u"] == "u9"


def test_user_submission_for_another_node_is_not_taken() -> None:
    d = Driver(bp("u", u={"kind": "user", "next": "e"}, e=END))
    d.receive()
    assert d.send({"type": "submission", "node": "other", "fields": {}}) == []


def par(mode: str, count: int | None = None) -> Blueprint:
    join: dict[str, Any] = {"kind": "join", "of": "p", "mode": mode, "next": "e"}
    if count:
        join["count"] = count
    user = {"kind": "user", "next": "j"}
    return bp("p", p={"kind": "parallel", "branches": ["a", "b", "c"]}, a=user, b=user, c=user, j=join, e=END)


@pytest.mark.parametrize(("mode", "count", "needed"), [("all", None, 3), ("any", None, 1), ("n", 2, 2)])
def test_parallel_and_join_all_any_n(mode: str, count: int | None, needed: int) -> None:
    d = Driver(par(mode, count))
    d.receive()
    assert d.nodes() == ["a", "b", "c"]
    for i, node in enumerate(["a", "b", "c"][:needed]):
        assert d.status == "running", i
        d.send({"type": "submission", "node": node, "fields": {}})
    assert d.status == "completed" and d.state is not None and d.state["tokens"] == {} and d.state["forks"] == {}


def test_join_any_interrupts_the_branches_still_running() -> None:
    b = bp("p", p={"kind": "parallel", "branches": ["a", "w"]}, a={"kind": "user", "next": "j"},
           w={"kind": "call", "steps": [{"partner": "p", "operation": "op", "mode": "callback",
                                         "cancel_operation": "stop"}], "timeout": {"after_s": 60, "to": "j"},
              "next": "j"},
           j={"kind": "join", "of": "p", "mode": "any", "next": "u2"}, u2={"kind": "user", "next": "e"}, e=END)
    d = Driver(b)
    d.receive()
    cmds = d.send({"type": "submission", "node": "a", "fields": {}})
    assert [c["type"] for c in cmds] == ["cancel_timer", "send_call"] and cmds[1]["operation"] == "stop"
    assert d.nodes() == ["u2"]


def test_timer_relative_and_absolute() -> None:
    d = Driver(bp("t", t={"kind": "timer", "after_s": 90, "next": "e"}, e=END), now=100.0)
    t = one(d.receive(), "start_timer")
    assert t["at"] == 190.0 and t["purpose"] == "timer"
    assert d.send({"type": "timer_fired", "timer_id": "nope"}) == []
    d.send({"type": "timer_fired", "timer_id": t["timer_id"]}, after=90)
    assert d.status == "completed"
    d = Driver(bp("t", t={"kind": "timer", "at": "data.due", "next": "e"}, e=END), now=100.0)
    assert one(d.receive(due=5000.0), "start_timer")["at"] == 5000.0


def test_timer_needs_exactly_one_of_after_and_at() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        bp("t", t={"kind": "timer", "next": "e"}, e=END)


def test_waiting_node_timeout_takes_a_path_and_cancels_what_it_waited_for() -> None:
    b = bp("u", u={"kind": "user", "timeout": {"after_s": 10, "to": "late"}, "next": "e"}, e=END,
           late={"kind": "end", "status": "failed"})
    d = Driver(b)
    timer = one(d.receive(), "start_timer")
    d.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=10)
    assert d.status == "failed"
    # a submission that comes after the timeout changes nothing
    assert d.send({"type": "submission", "node": "u", "fields": {}}) == []


def test_waiting_node_timeout_without_a_path_or_escalation_fails_the_order() -> None:
    b = bp("t", t={"kind": "timer", "after_s": 100, "timeout": {"after_s": 10}, "next": "e"}, e=END)
    d = Driver(b)
    timeout = next(c for c in d.receive() if c.get("purpose") == "timeout")
    cmds = d.send({"type": "timer_fired", "timer_id": timeout["timer_id"]}, after=10)
    assert d.status == "failed" and one(cmds, "cancel_timer")  # the node's own timer is cancelled


def test_receive_counts_distinct_orders_and_ignores_redeliveries() -> None:
    b = bp("r", r={"kind": "receive", "key": "data.k", "count": "3", "next": "e"}, e=END)
    d = Driver(b)
    d.receive("A", k="K")
    msg = {"type": "message", "key": "K", "order_id": "B", "payload": {}}
    assert of_type(d.send(msg), "finish") == []
    assert d.send(msg) == []  # the same order again does not count twice
    assert d.send({**msg, "key": "other", "order_id": "C"}) == []
    d.send({**msg, "order_id": "C"})
    assert d.status == "completed" and d.state is not None
    assert d.state["data"]["correlated"] == {"key": "K", "orders": ["B", "C"], "complete": True}


def test_receive_timeout_without_partial_fails() -> None:
    b = bp("r", r={"kind": "receive", "key": "'K'", "count": "2", "timeout": {"after_s": 5}, "next": "e"}, e=END)
    d = Driver(b)
    t = one(d.receive(), "start_timer")
    d.send({"type": "timer_fired", "timer_id": t["timer_id"]}, after=5)
    assert d.status == "failed"


def test_subflow_failure_takes_on_failure_and_cancel_cancels_the_child() -> None:
    b = bp("s", s={"kind": "subflow", "blueprint": "child", "on_failure": "f", "next": "e"}, e=END,
           f={"kind": "end", "status": "failed"})
    d = Driver(b)
    start = one(d.receive(), "start_subflow")
    d.send({"type": "subflow_finished", "child_id": start["child_id"], "status": "failed"})
    assert d.status == "failed"
    d = Driver(b)
    start = one(d.receive(), "start_subflow")
    assert one(d.send({"type": "cancel"}), "cancel_subflow") == {"type": "cancel_subflow",
                                                                   "child_id": start["child_id"]}


def test_a_failed_subflow_can_be_clicked_again_from_the_g3_node() -> None:
    # P14 refused inside a line product: on_failure names the shared "调用失败" node, whose transitions read
    # data._last_error.node (a KeyError in the expression before the sub-flow set it, as a failed call does)
    b = bp("s", s={"kind": "subflow", "blueprint": "child", "on_failure": "again", "next": "e"}, e=END,
           again={"kind": "user", "transitions": [{"when": "data._last_error.node == 's'", "to": "s"}],
                  "next": "f"},
           f={"kind": "end", "status": "failed"})
    d = Driver(b)
    first = one(d.receive(), "start_subflow")
    d.send({"type": "subflow_finished", "child_id": first["child_id"], "status": "failed",
            "data": {"error": "no team"}})
    assert d.status == "running"
    again = one(d.send({"type": "submission", "node": "again", "fields": {}}), "start_subflow")
    assert again["child_id"] != first["child_id"]
    d.send({"type": "subflow_finished", "child_id": again["child_id"], "status": "completed", "data": {}})
    assert d.status == "completed"


def test_end_statuses_and_a_second_end_in_parallel_finishes_everything() -> None:
    b = bp("p", p={"kind": "parallel", "branches": ["x", "y"]}, x={"kind": "end", "status": "cancelled"},
           y={"kind": "user", "next": "x"})
    d = Driver(b)
    cmds = d.receive()
    assert d.status == "cancelled" and one(cmds, "finish")["status"] == "cancelled"
    assert d.state is not None and d.state["tokens"] == {}


def test_compensations_run_in_reverse_completion_order() -> None:
    comp = {"partner": "rc", "operation": "release"}
    b = bp("a", a={"kind": "auto", "compensate": {**comp, "payload": {"n": "'a'"}}, "next": "b"},
           b={"kind": "auto", "compensate": {**comp, "payload": {"n": "'b'"}}, "next": "u"},
           u={"kind": "user", "next": "e"}, e=END)
    d = Driver(b)
    d.receive()
    cmds = d.send({"type": "cancel", "reason": "terminate"})
    assert [c["payload"]["n"] for c in of_type(cmds, "send_call")] == ["b", "a"]


def test_a_loop_without_a_waiting_node_is_a_blueprint_error_not_a_hang() -> None:
    b = bp("a", a={"kind": "auto", "next": "b"}, b={"kind": "choice", "next": "a"})
    with pytest.raises(ConfigError, match="loop without a waiting node"):
        step(b, None, {"type": "order_received", "order_id": "O"}, 0.0)


def test_events_for_unknown_orders_and_unknown_types_are_rejected() -> None:
    b = bp("u", u={"kind": "user", "next": "e"}, e=END)
    with pytest.raises(ValidationFailed):
        step(b, None, {"type": "submission", "node": "u"}, 0.0)
    state, _ = step(b, None, {"type": "order_received", "order_id": "O"}, 0.0)
    with pytest.raises(ValidationFailed, match="unknown event type"):
        step(b, state, {"type": "bogus"}, 0.0)
    again, cmds = step(b, state, {"type": "order_received", "order_id": "O"}, 1.0)
    assert again is state and cmds == []  # a redelivered intake


def test_the_same_state_and_event_give_the_same_commands_and_ids() -> None:
    b = bp("c", c={"kind": "call", "steps": [{"partner": "p", "operation": "op"}], "next": "e"}, e=END)
    first = step(b, None, {"type": "order_received", "order_id": "O"}, 3.0)
    second = step(b, None, {"type": "order_received", "order_id": "O"}, 3.0)
    assert first == second
    assert first[0]["digest"] == b.digest()


def test_call_log_has_the_g3_status_texts() -> None:
    b = bp("c", c={"kind": "call", "steps": [{"partner": "rc", "operation": "design", "label": "方案设计请求",
                                              "ok": "result.code == '0'", "error": "result.msg"}],
                   "on_failure": "c2"},
           c2={"kind": "call", "steps": [{"partner": "rc", "operation": "design", "label": "方案设计请求",
                                          "ok": "result.code == '0'"}], "next": "e"}, e=END)
    d = Driver(b, now=1_700_000_000.0)  # 2023-11-15 06:13:20 (CST)
    call = one(d.receive(), "send_call")
    call2 = one(d.send({"type": "call_result", "call_id": call["call_id"], "result": {"code": "9", "msg": "无资源"}}),
                "send_call")
    d.send({"type": "call_result", "call_id": call2["call_id"], "result": {"code": "0"}}, after=1)
    assert d.state is not None
    assert [c["text"] for c in d.state["data"]["_calls"]] == [
        "方案设计请求失败（无资源），请解决问题后重新点击方案设计请求按钮", "方案设计请求成功（2023-11-15 06:13:21）"]


def test_a_failed_exit_gate_keeps_the_token_until_a_retry_succeeds() -> None:
    """G2: on submit the f-report is sent; while it fails the stage is not left (and a second
    submission is not taken); the user's retry re-sends it, and success moves the order on."""
    rep = {"at": "exit", "gate": True, "partner": "g", "operation": "progress_report",
           "payload": {"by": "user.id", "ok": "fields.ok"}}
    d = Driver(bp("u", u={"kind": "user", "fields": [{"name": "ok", "type": "bool"}], "reports": [rep],
                          "next": "e"}, e=END))
    d.receive()
    first = one(d.send({"type": "submission", "node": "u", "fields": {"ok": True}, "user": {"id": "h7"}}),
                "send_report")
    assert first["payload"] == {"by": "h7", "ok": True}  # G1: the submitter reports
    assert d.send({"type": "retry", "node": "u"}) == []  # still out: nothing to re-send
    d.send({"type": "report_result", "report_id": first["report_id"], "ok": False, "error": "503"})
    assert d.nodes() == ["u"] and d.status == "running"
    assert d.send({"type": "submission", "node": "u", "fields": {"ok": True}}) == []
    again = one(d.send({"type": "retry", "node": "u"}), "send_report")
    d.send({"type": "report_result", "report_id": again["report_id"], "ok": True})
    assert d.status == "completed"


def test_a_failure_path_cancels_the_nodes_timeout_and_records_no_compensation() -> None:
    b = bp("s", s={"kind": "subflow", "blueprint": "child", "timeout": {"after_s": 60, "to": "late"},
                   "compensate": {"partner": "rc", "operation": "undo"}, "on_failure": "u", "next": "e"},
           u={"kind": "user", "next": "e"}, e=END, late={"kind": "end", "status": "failed"})
    d = Driver(b)
    cmds = d.receive()
    timer, start = one(cmds, "start_timer"), one(cmds, "start_subflow")
    cmds = d.send({"type": "subflow_finished", "child_id": start["child_id"], "status": "failed"})
    assert one(cmds, "cancel_timer")["timer_id"] == timer["timer_id"]
    assert d.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=60) == []
    assert d.nodes() == ["u"] and d.state is not None and d.state["done"] == []
