"""v2 engine, driven through the exemplar blueprints of tests/fixtures/flows/ (pure, injected clock).

P04.1 (auto team, callback call, P14 sub-flow, G9 audit loop, SLA escalation, cancel with compensation),
P06.4 (field locks, gated G6 reports, choice by access type, ordered sub-steps with polling, 资源重查),
and the fusion blueprint (parallel + join, receive correlating two orders, an absolute timer).
"""

from __future__ import annotations

from typing import Any

from tests.unit.flows_graph_harness import Driver, fixture_blueprint, of_type, one


def p04(**data: Any) -> Driver:
    d = Driver(fixture_blueprint("p04_1_transmission_open"))
    d.receive("O1", city="zz", bandwidth=100, address="A1", **data)
    return d


def design_reply(d: Driver, resources: str = "yes") -> list[dict[str, Any]]:
    call = one(d.steps[0]["commands"], "send_call")
    return d.send({"type": "call_result", "call_id": call["call_id"], "via": "callback",
                   "result": {"code": "0", "resources": resources}}, after=60)


def test_p04_1_auto_accept_then_callback_design() -> None:
    d = p04()
    call = one(d.steps[0]["commands"], "send_call")
    assert (call["partner"], call["operation"], call["payload"]) == (
        "resource", "design_request", {"order_id": "O1", "bandwidth": 100})
    assert d.state is not None and d.state["data"]["team"] == "transmission-zz"
    assert d.state["data"]["_operators"]["accept"] == "系统自动"  # G8
    one(d.steps[0]["commands"], "start_timer")  # the design timeout
    cmds = design_reply(d)
    assert of_type(cmds, "cancel_timer") and d.nodes() == ["network_change"]


def test_p04_1_audit_loop_goes_back_to_verification_and_audits_again() -> None:
    """G9: a failed 开通结果审核 returns to 业务验证, then audits again; the audit count shows both."""
    d = p04()
    design_reply(d)
    d.send({"type": "submission", "node": "network_change", "fields": {"change_done": True}, "user": {"id": "u1"}})
    assert d.nodes() == ["verification"]
    d.send({"type": "submission", "node": "verification", "fields": {"test_ok": False}, "user": {"id": "u2"}})
    assert d.nodes() == ["verification"]  # audit failed → back
    assert d.state is not None and d.state["data"]["audits"] == 1
    d.send({"type": "submission", "node": "verification", "fields": {"test_ok": True}, "user": {"id": "u2"}})
    assert d.nodes() == ["close_report"] and d.state["data"]["audits"] == 2
    close = one(d.steps[-1]["commands"], "send_call")
    cmds = d.send({"type": "call_result", "call_id": close["call_id"], "result": {"checkResult": "1"}})
    assert d.status == "completed"
    assert one(cmds, "reply")["payload"] == {"order_id": "O1", "audits": 2}
    assert one(cmds, "finish")["status"] == "completed"


def test_p04_1_no_resources_runs_p14_as_a_subflow_and_maps_the_result_back() -> None:
    d = p04()
    cmds = design_reply(d, resources="no")
    start = one(cmds, "start_subflow")
    assert start["blueprint"] == "p14-construction" and start["input"] == {"order_id": "O1", "address": "A1"}
    # the child runs on its own record, with the same engine
    child = Driver(fixture_blueprint("p14_construction"))
    child.send({"type": "order_received", "order_id": start["child_id"], "data": start["input"]})
    c_call = one(child.steps[0]["commands"], "send_call")
    child.send({"type": "call_result", "call_id": c_call["call_id"], "result": {"status": "done"}})
    assert child.status == "completed"
    assert child.state is not None
    d.send({"type": "subflow_finished", "child_id": start["child_id"], "status": "completed",
            "data": child.state["data"]})
    assert d.nodes() == ["network_change"]
    assert d.state is not None and d.state["data"]["construction_result"] == "done"


def test_p04_1_sla_timer_escalates_and_keeps_waiting() -> None:
    d = p04()
    design_reply(d)
    cmds = d.send({"type": "submission", "node": "network_change", "fields": {"change_done": True}})
    timer = one(cmds, "start_timer")
    assert timer["purpose"] == "timeout" and timer["at"] == d.now + 7200
    cmds = d.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=7200)
    esc = one(cmds, "send_report")
    assert (esc["partner"], esc["on"], esc["payload"]) == ("esop", "escalate",
                                                           {"code": "SLA_WARN", "node": "verification"})
    assert d.nodes() == ["verification"] and d.status == "running"
    # the same timer firing twice (a redelivered timer) changes nothing
    assert d.send({"type": "timer_fired", "timer_id": timer["timer_id"]}) == []


def test_p04_1_design_timeout_takes_the_failure_path() -> None:
    d = p04()
    timer = one(d.steps[0]["commands"], "start_timer")
    cmds = d.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=86400)
    assert d.status == "failed" and one(cmds, "reply")["payload"] == {"reason": "design timed out"}
    # the callback that arrives after the timeout is ignored
    call = one(d.steps[0]["commands"], "send_call")
    assert d.send({"type": "call_result", "call_id": call["call_id"], "result": {"code": "0"}}) == []


def test_p04_1_cancel_compensates_completed_nodes_in_reverse_and_replies() -> None:
    """P26.4: a withdraw after the network change undoes it; timers of the waiting node are cancelled."""
    d = p04()
    design_reply(d)
    d.send({"type": "submission", "node": "network_change", "fields": {"change_done": True}})
    cmds = d.send({"type": "cancel", "reason": "撤单"}, after=5)
    assert [c["type"] for c in cmds] == ["cancel_timer", "send_call", "reply", "finish"]
    comp = cmds[1]
    assert (comp["purpose"], comp["partner"], comp["operation"], comp["payload"]) == (
        "compensate", "resource", "config_plan", {"order_id": "O1", "action": "undo"})
    assert d.status == "cancelled" and d.state is not None and d.state["tokens"] == {}
    assert d.send({"type": "cancel", "reason": "again"}) == []


# ---- P06.4 ------------------------------------------------------------------------------------
def p06(access: str, **data: Any) -> Driver:
    d = Driver(fixture_blueprint("p06_4_srv6_change"))
    d.receive("S1", access_type=access, pe_ce_access="2", **data)
    return d


def pass_gate(d: Driver, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rep = one(cmds, "send_report")
    return d.send({"type": "report_result", "report_id": rep["report_id"], "ok": True})


def design(d: Driver, **fields: Any) -> list[dict[str, Any]]:
    pass_gate(d, d.steps[0]["commands"])
    base = {"change_type": "提速", "circuit_ids": ["C1"], "contact_phone": "13800000000"}
    return d.send({"type": "submission", "node": "design", "fields": {**base, **fields}, "user": {"id": "h1"}})


def test_p06_4_entry_report_gates_the_stage_and_retries_on_failure() -> None:
    """G2/G6: descOutline 1 on entering; while it fails the stage is not entered, a retry re-sends it."""
    d = p06("PON")
    rep = one(d.steps[0]["commands"], "send_report")
    assert rep["payload"] == {"progress": "方案设计", "descOutline": 1} and rep["gate"] is True
    d.send({"type": "report_result", "report_id": rep["report_id"], "ok": False, "error": "down"})
    # a submission before the gate passed is not taken
    assert d.send({"type": "submission", "node": "design", "fields": {"change_type": "提速"}}) == []
    again = one(d.send({"type": "retry", "node": "design"}), "send_report")
    assert again["report_id"] != rep["report_id"]
    d.send({"type": "report_result", "report_id": again["report_id"], "ok": True})
    assert d.state is not None and d.state["tokens"][next(iter(d.state["tokens"]))]["phase"] == "active"


def test_p06_4_design_locks_replace_device_for_slow_down() -> None:
    d = p06("PON")
    cmds = design(d, change_type="降速", replace_device="是")
    assert one(cmds, "reply")["errors"] == [{"field": "replace_device", "message": "locked to '否'"}]
    assert d.nodes() == ["design"]
    cmds = design(d, change_type="降速")
    exit_rep = one(cmds, "send_report")
    assert exit_rep["payload"]["descOutline"] == 2
    assert d.state is not None and d.state["data"]["replace_device"] == "否"  # filled by the lock


def test_p06_4_pon_runs_gpon_then_sr_with_polling() -> None:
    d = p06("PON")
    pass_gate(d, design(d))
    gpon = one(d.steps[-1]["commands"], "send_call")
    assert gpon["operation"] == "gpon_activate"
    cmds = d.send({"type": "call_result", "call_id": gpon["call_id"], "pending": True})  # accepted
    poll_timer = one(cmds, "start_timer")
    assert poll_timer["purpose"] == "poll" and poll_timer["at"] == d.now + 60
    query = one(d.send({"type": "timer_fired", "timer_id": poll_timer["timer_id"]}, after=60), "send_call")
    assert (query["operation"], query["purpose"], query["payload"]) == ("result_query", "poll",
                                                                         {"call_id": gpon["call_id"]})
    # SR is not sent while GPON has no result
    assert not of_type(d.steps[-1]["commands"], "send_call") or query["operation"] != "sr_activate"
    cmds = d.send({"type": "call_result", "call_id": gpon["call_id"], "via": "poll",
                   "result": {"status": "success"}}, after=1)
    sr = one(cmds, "send_call")
    assert sr["operation"] == "sr_activate"
    cmds = d.send({"type": "call_result", "call_id": sr["call_id"], "via": "callback",
                   "result": {"status": "success"}}, after=5)
    assert one(cmds, "send_call")["operation"] == "close_report"
    assert d.state is not None and [c["operation"] for c in d.state["data"]["_calls"]] == [
        "gpon_activate", "sr_activate"]
    assert d.state["data"]["activated_at"] == d.now


def test_p06_4_refresh_queries_the_result_at_once_without_using_up_the_poll_limit() -> None:
    """P06.4 刷新 / B.7: the re-query button is a `retry` on the activation node."""
    d = p06("PON")
    pass_gate(d, design(d))
    gpon = one(d.steps[-1]["commands"], "send_call")
    d.send({"type": "call_result", "call_id": gpon["call_id"], "pending": True})
    query = one(d.send({"type": "retry", "node": "activate_pon"}, after=5), "send_call")
    assert (query["operation"], query["payload"]) == ("result_query", {"call_id": gpon["call_id"]})
    assert d.state is not None
    (token,) = d.state["tokens"].values()
    assert token["wait"]["polls"] == 0 and list(token["timers"].values()) == ["poll"]  # the schedule goes on
    assert d.send({"type": "retry", "node": "design"}) == []  # no token there


def test_p06_4_gpon_failure_skips_sr_and_rechecks_resources() -> None:
    d = p06("PON")
    pass_gate(d, design(d))
    gpon = one(d.steps[-1]["commands"], "send_call")
    cmds = d.send({"type": "call_result", "call_id": gpon["call_id"], "result": {"status": "fail"}})
    recheck = one(cmds, "send_call")
    assert (recheck["partner"], recheck["operation"]) == ("resource", "resource_config")
    cmds = d.send({"type": "call_result", "call_id": recheck["call_id"], "result": {"code": "0"}})
    assert one(cmds, "send_call")["operation"] == "gpon_activate"  # by_access again: a loop back


def test_p06_4_poll_limit_fails_the_step() -> None:
    d = p06("PON")
    pass_gate(d, design(d))
    gpon = one(d.steps[-1]["commands"], "send_call")
    cmds = d.send({"type": "call_result", "call_id": gpon["call_id"], "pending": True})
    for _ in range(3):
        t = one(cmds, "start_timer")
        d.send({"type": "timer_fired", "timer_id": t["timer_id"]}, after=60)
        cmds = d.send({"type": "call_result", "call_id": gpon["call_id"], "pending": True, "via": "poll"})
    assert one(cmds, "send_call")["operation"] == "resource_config"


def test_p06_4_access_types_choose_their_activation() -> None:
    for access, ops in (("PTN双规", ["ptn_activate", "sr_activate"]), ("SPN单规", ["spn_activate"]),
                        ("OTN", ["otn_activate"])):
        d = p06(access)
        cmds = pass_gate(d, design(d))
        seen = []
        while (call := of_type(cmds, "send_call")) and call[0]["operation"] != "close_report":
            seen.append(call[0]["operation"])
            cmds = d.send({"type": "call_result", "call_id": call[0]["call_id"], "result": {"ok": True}})
        assert seen == ops, access
    d = p06("7.光纤直驱")
    pass_gate(d, design(d))
    assert d.nodes() == ["offline"]


def test_p06_4_reject_ends_the_order() -> None:
    d = p06("PON")
    pass_gate(d, design(d, decision="驳回"))
    assert d.status == "failed"


# ---- fusion: parallel + join, receive, absolute timer -----------------------------------------
def fusion(order_id: str) -> Driver:
    d = Driver(fixture_blueprint("fusion_parallel"))
    d.receive(order_id, fusion_key="F1", related_count=2, address="A", visit_at=1_700_100_000.0)
    return d


def finish_branches(d: Driver) -> list[dict[str, Any]]:
    call = one(d.steps[0]["commands"], "send_call")
    d.send({"type": "call_result", "call_id": call["call_id"], "result": {"ok": True, "ip": "10.0.0.1"}})
    assert d.nodes() == ["design_transport"]  # one branch done, the other still open: the join waits
    return d.send({"type": "submission", "node": "design_transport", "fields": {"circuit": "C-7"}})


def test_parallel_branches_join_then_receive_correlates_two_orders() -> None:
    a, b = fusion("A1"), fusion("B1")
    assert a.nodes() == ["design_ip", "design_transport"]
    pub_a = one(finish_branches(a), "publish")
    assert pub_a == {"type": "publish", "key": "F1", "order_id": "A1", "payload": {"address": "A"}}
    assert a.nodes() == ["fusion_wait"]
    pub_b = one(finish_branches(b), "publish")
    # the relay hands each order the other's message (and maybe its own echo, which is ignored)
    assert a.send({"type": "message", **{k: pub_a[k] for k in ("key", "order_id", "payload")}}) == []
    cmds = a.send({"type": "message", **{k: pub_b[k] for k in ("key", "order_id", "payload")}})
    assert one(cmds, "start_timer")["at"] == 1_700_100_000.0 and a.nodes() == ["visit"]
    timer = one(cmds, "start_timer")
    cmds = a.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=100_000)
    assert one(cmds, "reply")["payload"] == {"group": ["B1"], "complete": True}
    assert a.status == "completed"


def test_receive_timeout_releases_partially() -> None:
    a = fusion("A1")
    cmds = finish_branches(a)
    timeout = one(cmds, "start_timer")
    a.send({"type": "timer_fired", "timer_id": timeout["timer_id"]}, after=3600)
    assert a.nodes() == ["visit"]
    assert a.state is not None and a.state["data"]["correlated"] == {"key": "F1", "orders": [], "complete": False}
