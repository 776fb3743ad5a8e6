"""v2 engine: cancel with compensation (P26.4 withdraw after network change) and suspend / resume (D.1.8).

Pure engine, injected clock (tests/unit/flows_graph_harness.py): time only moves when a test says so.
"""

from __future__ import annotations

from typing import Any

from tests.unit.flows_graph_harness import Driver, fixture_blueprint, of_type, one

T0 = 1_700_000_000.0


def p26(**data: Any) -> Driver:
    d = Driver(fixture_blueprint("p26_4_5g_withdraw"), now=T0)
    d.receive("W1", city="hz", dnn="dnn.zj", **data)
    return d


def answer(d: Driver, ok_result: dict[str, Any], *, after: float = 1.0, via: str = "sync") -> list[dict[str, Any]]:
    """Answer the one partner call the last step sent."""
    call = one(d.steps[-1]["commands"], "send_call")
    return d.send({"type": "call_result", "call_id": call["call_id"], "via": via, "result": ok_result}, after=after)


def to_activation(d: Driver) -> dict[str, Any]:
    """Reserve and configure (both complete), then activation is pending at CAM; its call."""
    answer(d, {"code": "0", "reservation_id": "R-77"})
    answer(d, {"code": "0", "config_id": "UPF-5"})
    assert d.nodes() == ["activation"]
    return one(d.steps[-1]["commands"], "send_call")


# ---- P26.4: cancel with compensation ------------------------------------------------------------
def test_p26_4_withdraw_while_activation_pending_cancels_it_then_compensates_in_reverse() -> None:
    d = p26()
    activation = to_activation(d)
    timeout = one(d.steps[-1]["commands"], "start_timer")
    cmds = d.send({"type": "cancel", "reason": "撤单", "by": "esop"}, after=30)
    assert [c["type"] for c in cmds] == ["cancel_timer", "send_call", "send_call", "send_call", "reply", "finish"]
    assert cmds[0]["timer_id"] == timeout["timer_id"]
    cancel, undo, release = cmds[1:4]
    assert (cancel["purpose"], cancel["partner"], cancel["operation"], cancel["payload"]) == (
        "cancel", "cam", "cancel", {"call_id": activation["call_id"]})
    # latest completed first: the UPF configuration is undone before the reservation is released
    assert (undo["purpose"], undo["partner"], undo["operation"], undo["payload"]) == (
        "compensate", "core_workbench", "upf_config", {"order_id": "W1", "action": "undo", "config_id": "UPF-5"})
    assert (release["purpose"], release["partner"], release["operation"], release["payload"]) == (
        "compensate", "resource", "resource_allocation",
        {"order_id": "W1", "action": "release", "reservation_id": "R-77"})
    assert cmds[4] == {"type": "reply", "to": "origin", "payload": {"reason": "撤单", "by": "esop"},
                       "status": "cancelled"}
    assert cmds[5] == {"type": "finish", "status": "cancelled", "reason": "撤单"}
    assert d.status == "cancelled" and d.state is not None and d.state["tokens"] == {}
    assert d.state["cancelled_by"] == "esop"
    assert d.state["trail"][-1]["node"] == "activation" and d.state["trail"][-1]["outcome"] == "stopped"


def test_p26_4_a_second_cancel_and_late_results_change_nothing() -> None:
    d = p26()
    activation = to_activation(d)
    timeout = one(d.steps[-1]["commands"], "start_timer")
    d.send({"type": "cancel", "reason": "撤单"})
    final = d.state
    assert d.send({"type": "cancel", "reason": "again"}) == []
    assert d.send({"type": "call_result", "call_id": activation["call_id"], "via": "callback",
                   "result": {"status": "success"}}, after=60) == []
    assert d.send({"type": "timer_fired", "timer_id": timeout["timer_id"]}, after=3600) == []
    compensations = [c for c in d.steps[-4]["commands"] if c.get("purpose") == "compensate"]
    assert d.send({"type": "call_result", "call_id": compensations[0]["call_id"], "result": {"code": "0"}}) == []
    assert d.state is final and d.status == "cancelled"


def test_cancel_compensates_only_nodes_that_completed() -> None:
    """A withdraw while the UPF configuration is pending: only the reservation is released; the
    pending sync call has no cancel operation, so nothing is sent for it."""
    d = p26()
    answer(d, {"code": "0", "reservation_id": "R-1"})
    assert d.nodes() == ["network_config"]
    cmds = d.send({"type": "cancel", "reason": "terminate"})
    calls = of_type(cmds, "send_call")
    assert [(c["purpose"], c["operation"], c["payload"].get("action")) for c in calls] == [
        ("compensate", "resource_allocation", "release")]
    assert d.status == "cancelled"


def test_cancel_before_anything_completed_only_replies() -> None:
    d = p26()
    cmds = d.send({"type": "cancel", "reason": "撤单"})
    assert [c["type"] for c in cmds] == ["reply", "finish"]


# ---- suspend / resume ---------------------------------------------------------------------------
def test_suspend_pauses_the_timers_and_resume_restarts_them_with_the_remaining_time() -> None:
    d = p26()
    to_activation(d)
    timeout = one(d.steps[-1]["commands"], "start_timer")
    assert timeout["at"] == d.now + 3600
    cmds = d.send({"type": "suspend", "reason": "customer asked", "by": "op:li"}, after=1000)
    assert cmds == [{"type": "cancel_timer", "timer_id": timeout["timer_id"]}]
    assert d.state is not None and d.state["suspended"]["timers"] == [
        {"token": next(iter(d.state["tokens"])), "purpose": "timeout", "remaining": 2600.0}]
    cmds = d.send({"type": "resume", "by": "op:li"}, after=50_000)  # however long it was held
    restarted = one(cmds, "start_timer")
    assert restarted["purpose"] == "timeout" and restarted["at"] == d.now + 2600
    assert restarted["timer_id"] != timeout["timer_id"]
    assert "suspended" not in d.state
    assert d.state["suspensions"] == [{"at": T0 + 2 + 1000, "until": d.now, "reason": "customer asked",
                                       "by": "op:li"}]
    # the old timer firing late does nothing; the restarted one escalates as the original would have
    assert d.send({"type": "timer_fired", "timer_id": timeout["timer_id"]}) == []
    esc = one(d.send({"type": "timer_fired", "timer_id": restarted["timer_id"]}, after=2600), "send_report")
    assert esc["payload"] == {"code": "SLA_WARN", "node": "activation"}


def test_while_suspended_results_are_kept_and_nothing_is_sent_until_resume() -> None:
    d = p26()
    activation = to_activation(d)
    timeout = one(d.steps[-1]["commands"], "start_timer")
    d.send({"type": "suspend", "reason": "hold"}, after=10)
    # the partner's callback arrives: recorded, but the order does not move and sends nothing
    before = d.state
    cmds = d.send({"type": "call_result", "call_id": activation["call_id"], "via": "callback",
                   "result": {"status": "success"}}, after=20)
    assert cmds == [] and d.state is not before  # a new state: the event is in it (durable)
    assert d.state is not None and d.nodes() == ["activation"]
    assert [k["event"]["type"] for k in d.state["suspended"]["events"]] == ["call_result"]
    # a paused timer that fires anyway (it was due as the suspend was applied) is not kept
    assert d.send({"type": "timer_fired", "timer_id": timeout["timer_id"]}) == []
    # a submission for the next node is kept too, in arrival order
    d.send({"type": "submission", "node": "verification", "fields": {"test_ok": True}, "user": {"id": "u1"}})
    assert len(d.state["suspended"]["events"]) == 2
    assert d.send({"type": "suspend", "reason": "again"}) == []  # already suspended
    cmds = d.send({"type": "resume"}, after=100)
    # resume: the timeout restarts, then the kept callback completes activation (its timer cancelled),
    # the kept submission completes verification and the close report goes out — only now
    assert [c["type"] for c in cmds] == ["start_timer", "cancel_timer", "send_call"]
    assert cmds[1]["timer_id"] == cmds[0]["timer_id"]
    assert (cmds[2]["partner"], cmds[2]["operation"]) == ("esop", "close_report")
    assert d.nodes() == ["close_report"] and "suspended" not in d.state


def test_resume_of_an_order_that_is_not_suspended_changes_nothing() -> None:
    d = p26()
    assert d.send({"type": "resume"}) == []


def test_a_timer_already_due_at_the_suspend_fires_right_after_resume() -> None:
    d = p26()
    to_activation(d)
    timeout = one(d.steps[-1]["commands"], "start_timer")
    d.send({"type": "suspend", "reason": "hold"}, after=4000)  # the timer was due; its firing not yet applied
    assert d.send({"type": "timer_fired", "timer_id": timeout["timer_id"]}) == []
    restarted = one(d.send({"type": "resume"}, after=60), "start_timer")
    assert restarted["at"] == d.now


def test_cancel_while_suspended_is_executed_at_once_and_drops_the_kept_events() -> None:
    d = p26()
    activation = to_activation(d)
    d.send({"type": "suspend", "reason": "hold"})
    d.send({"type": "call_result", "call_id": activation["call_id"], "via": "callback",
            "result": {"status": "success"}})
    cmds = d.send({"type": "cancel", "reason": "撤单"})
    # no cancel_timer (the timers were cancelled at the suspend); activation was still pending for the
    # engine (its answer only kept), so CAM gets its cancel, then the compensations, reply, finish
    assert [(c["type"], c.get("purpose")) for c in cmds] == [
        ("send_call", "cancel"), ("send_call", "compensate"), ("send_call", "compensate"), ("reply", None),
        ("finish", None)]
    assert d.status == "cancelled" and d.state is not None and "suspended" not in d.state
    assert d.send({"type": "resume"}) == []


def test_suspend_pauses_a_poll_timer_and_the_restarted_one_polls() -> None:
    """P06.4 polling: the poll interval is paused too; after resume the next query goes out on time."""
    from tests.unit import flows_graph_scenarios_test as sc

    d = sc.p06("PON")
    sc.pass_gate(d, sc.design(d))
    gpon = one(d.steps[-1]["commands"], "send_call")
    poll = one(d.send({"type": "call_result", "call_id": gpon["call_id"], "pending": True}), "start_timer")
    assert poll["purpose"] == "poll"
    d.send({"type": "suspend", "reason": "hold"}, after=20)
    restarted = one(d.send({"type": "resume"}, after=500), "start_timer")
    assert restarted["purpose"] == "poll" and restarted["at"] == d.now + (poll["at"] - (d.now - 500))
    query = one(d.send({"type": "timer_fired", "timer_id": restarted["timer_id"]}, after=40), "send_call")
    assert (query["purpose"], query["operation"]) == ("poll", "result_query")


# ---- on_suspend / on_resume: telling the partners that hold work (issue 13 §5) -------------------
def held_bp() -> Any:
    from flows.graph import Blueprint

    notice = {"partner": "maint", "payload": {"task": "data.task", "why": "hold.reason", "who": "hold.by"}}
    return Blueprint.model_validate({"name": "held", "start": "book", "nodes": {
        "book": {"kind": "call", "steps": [{"partner": "maint", "operation": "book", "save": {"task": "result.task"}}],
                 "on_suspend": {**notice, "operation": "pause_booking", "during": ["completed"]},
                 "on_resume": {**notice, "operation": "unpause_booking", "during": ["completed"]}, "next": "work"},
        "work": {"kind": "call", "steps": [{"partner": "maint", "operation": "work", "mode": "callback"}],
                 "timeout": {"after_s": 100, "to": "done"},
                 "on_suspend": {**notice, "operation": "pause_work"}, "next": "done"},
        "done": {"kind": "end"}}})


def test_suspend_tells_the_active_and_completed_nodes_partners_at_once_and_resume_too() -> None:
    d = Driver(held_bp(), now=T0)
    d.receive("H1")
    answer(d, {"ok": True, "task": "T-9"})
    assert d.nodes() == ["work"]
    cmds = d.send({"type": "suspend", "reason": "客户停机", "by": "op:li"}, after=10)
    told = of_type(cmds, "send_report")
    # the active node's notice, then the completed one's; the timeout paused in the same step
    assert [(r["operation"], r["node"], r["on"]) for r in told] == [
        ("pause_work", "work", "suspend"), ("pause_booking", "book", "suspend")]
    assert told[0]["payload"] == {"task": "T-9", "why": "客户停机", "who": "op:li"}
    assert len(of_type(cmds, "cancel_timer")) == 1 and of_type(cmds, "send_call") == []
    assert d.send({"type": "suspend", "reason": "again"}) == []  # a second suspend: nothing, nobody told twice
    cmds = d.send({"type": "resume", "reason": "复机", "by": "op:wang"}, after=500)
    # only `book` declares on_resume; then the timeout restarts with its 90 s left
    assert [(r["operation"], r["on"], r["payload"]["why"]) for r in of_type(cmds, "send_report")] == [
        ("unpause_booking", "resume", "复机")]
    assert one(cmds, "start_timer")["at"] == d.now + 90


def test_cancel_while_suspended_and_a_node_without_notices_send_no_notice() -> None:
    d = Driver(held_bp(), now=T0)
    d.receive("H2")
    assert of_type(d.send({"type": "suspend", "reason": "x"}), "send_report") == []  # book active: `completed` only
    cmds = d.send({"type": "cancel", "reason": "撤单"})
    assert d.status == "cancelled" and of_type(cmds, "send_report") == []


def test_hold_notices_are_checked_at_load() -> None:
    from flows.graph.check import problems_of

    bp = held_bp()
    found = problems_of(bp, operations={"maint": {"book", "work", "pause_work", "pause_booking"}})
    assert ((("nodes", "book", "on_resume"), "partner 'maint' has no operation 'unpause_booking'")) in found
    assert [loc for loc, _ in bp.nodes["work"].expressions() if loc[0] == "on_suspend"] == [
        ("on_suspend", "payload", "task"), ("on_suspend", "payload", "why"), ("on_suspend", "payload", "who")]


# ---- replay recordings (tests/unit/flows_graph_replay_test.py) ----------------------------------
def recorded_withdraw() -> Driver:
    d = p26()
    activation = to_activation(d)
    d.send({"type": "cancel", "reason": "撤单", "by": "esop"}, after=30)
    d.send({"type": "cancel", "reason": "again"})
    d.send({"type": "call_result", "call_id": activation["call_id"], "via": "callback",
            "result": {"status": "success"}}, after=60)
    return d


def recorded_suspend() -> Driver:
    d = p26()
    activation = to_activation(d)
    d.send({"type": "suspend", "reason": "hold", "by": "op:li"}, after=1000)
    d.send({"type": "call_result", "call_id": activation["call_id"], "via": "callback",
            "result": {"status": "success"}}, after=20)
    d.send({"type": "resume", "by": "op:li"}, after=3000)
    d.send({"type": "submission", "node": "verification", "fields": {"test_ok": True}, "user": {"id": "u1"}})
    answer(d, {"checkResult": "1"})
    assert d.status == "completed"
    return d
