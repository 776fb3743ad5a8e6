"""Fusion "one visit" in the pure engine (issue 13 §1-5): the fragment config/flows/fragments/
fusion_wait_dispatch.yaml on the fixture tests/fixtures/fusion/fusion_one_visit.yaml.

The relay is played by :class:`Correlations`: like flows/runtime/relay.py it keeps one row per
published member and hands each new member the others' messages and the others the new one — here in
any order the test chooses, duplicated when it says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.fusion import config as fusion_config
from flows.fusion.config import Wait
from flows.graph.check import partner_operations
from flows.graph.library import load_file
from hub.partners import load_partners
from tests.unit.flows_graph_harness import Driver, of_type, one

ROOT = Path(__file__).resolve().parents[2]
BP = load_file(ROOT / "tests/fixtures/fusion/fusion_one_visit.yaml", ROOT / "config",
               partner_operations(load_partners(ROOT / "config")),
               directory=ROOT / "config" / "flows" / "fragments")  # the fragments only: not every blueprint


@pytest.fixture(autouse=True)
def _config() -> Any:
    conf = fusion_config.load(ROOT / "config" / "fusion.yaml")
    fusion_config.use(conf.model_copy(update={"wait": Wait(default_s=3600, products={"hotel_pbx": 600})}))
    yield
    fusion_config.use(None)


def member(oid: str, ext: str, product: str, detail: str, ids: list[str], count: int | None = None,
           key: str = "F-1") -> tuple[Driver, list[dict[str, Any]]]:
    d = Driver(BP)
    cmds = d.receive(oid, external_order_id=ext, product=product, scenario="open", customer={"name": "某某酒店"},
                     addresses=[{"role": "install", "city": "郑州", "detail": detail}],
                     extensions={"service_level": "AAA"},
                     fusion={"fusion_key": key, "is_fusion": True, "related_count": count or len(ids),
                             "related_order_ids": ids})
    return d, cmds


class Correlations:
    """The relay's correlation rows: publish → (to others, to me) messages."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, Driver] = {}

    def publish(self, d: Driver, cmds: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """The messages the relay sends for ``d``'s publish commands (not delivered yet)."""
        out = []
        for c in of_type(cmds, "publish"):
            me = c["order_id"]
            self.orders[me] = d
            if c.get("withdrawn"):
                self.rows.pop(me, None)
                out += [(them, {"type": "message", "key": c["key"], "order_id": me, "payload": c["payload"]})
                        for them in self.rows]
                continue
            self.rows[me] = c["payload"]
            for them, payload in self.rows.items():
                if them != me:
                    out.append((them, {"type": "message", "key": c["key"], "order_id": me, "payload": c["payload"]}))
                    out.append((me, {"type": "message", "key": c["key"], "order_id": them, "payload": payload}))
        return out

    def deliver(self, messages: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        got: dict[str, list[dict[str, Any]]] = {}
        for to, event in messages:
            got.setdefault(to, []).extend(self.orders[to].send(event))
        return got


def calls(cmds: list[dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    return [c for c in of_type(cmds, "send_call") if c["operation"] == operation]


def test_members_out_of_order_and_duplicated_dispatch_once_each() -> None:
    """Three members (internet line + PBX at one address, cameras at another), published in reverse
    order, every message delivered twice and shuffled: each member dispatches exactly once, two tasks."""
    corr = Correlations()
    ids = ["E-1", "E-2", "E-3"]
    c, cc = member("C", "E-3", "camera", "郑州市中原区建设西路11号", ids)
    b, cb = member("B", "E-2", "hotel_pbx", "河南省郑州市 金水区花园路１８號", ids)
    a, ca = member("A", "E-1", "internet_line", "郑州市金水区花园路18号", ids)
    msgs = corr.publish(c, cc) + corr.publish(b, cb) + corr.publish(a, ca)
    got = corr.deliver(list(reversed(msgs)) + msgs)  # duplicated, out of order
    dispatched = {oid: calls(cmds, "construction_order") for oid, cmds in got.items()}
    assert {oid: len(v) for oid, v in dispatched.items()} == {"A": 1, "B": 1, "C": 1}
    task = {oid: v[0]["payload"]["task"] for oid, v in dispatched.items()}
    assert task["A"]["task_id"] == task["B"]["task_id"] != task["C"]["task_id"]  # one task per address
    assert task["A"]["tasks"] == task["C"]["tasks"] == 2
    assert task["A"]["team"]["id"] == "ZZ-JS-01" and task["C"]["team"]["id"] == "ZZ-ZY-01"  # district teams
    # D.1.7: the line-bearing member leads its task; the camera task has none, its first member leads
    assert task["B"]["first_contact_order"] == "A" and task["A"]["first_contact"] and not task["B"]["first_contact"]
    assert task["C"]["first_contact_order"] == "C"
    # D.1.2: fusion info, requirements, address and service level travel with each member
    assert task["B"]["order"]["service_level"] == "AAA" and task["B"]["related_count"] == 3
    assert task["B"]["order"]["addresses"][0]["detail"] == "河南省郑州市 金水区花园路１８號"
    assert [m["order_id"] for m in task["A"]["members"]] == ["A", "B"]


def test_reply_moves_only_its_member() -> None:
    """D.1.5: B's construction reply completes B; A still waits for its own."""
    corr = Correlations()
    a, ca = member("A", "E-1", "internet_line", "花园路18号", ["E-1", "E-2"])
    b, cb = member("B", "E-2", "hotel_pbx", "花园路18号", ["E-1", "E-2"])
    got = corr.deliver(corr.publish(a, ca) + corr.publish(b, cb))
    call_b = one(got["B"], "send_call")
    cmds = b.send({"type": "call_result", "call_id": call_b["call_id"], "via": "callback",
                   "result": {"status": "completed", "taker": {"name": "李工", "phone": "13900000002"}}})
    assert b.nodes() == ["after_fusion"] and of_type(cmds, "send_call") == []
    assert b.state is not None and b.state["data"]["construction"]["taker"]["name"] == "李工"
    assert a.status == "running" and a.nodes() == ["fusion_dispatch"]
    cmds = b.send({"type": "submission", "node": "after_fusion", "fields": {"accepted": True}})
    assert b.status == "completed" and one(cmds, "reply")["payload"]["task"] == call_b["payload"]["task"]["task_id"]


def test_count_mismatch_refuses_the_later_member_and_alerts_the_group() -> None:
    corr = Correlations()
    a, ca = member("A", "E-1", "internet_line", "花园路18号", ["E-1", "E-2"])
    b = Driver(BP, now=1_700_000_005.0)  # B arrives later: A's group (2 orders) stands
    cb = b.receive("B", external_order_id="E-2", product="hotel_pbx", scenario="open", customer={"name": "x"},
                   addresses=[{"city": "郑州", "detail": "花园路18号"}],
                   fusion={"fusion_key": "F-1", "related_count": 3, "related_order_ids": []})
    got = corr.deliver(corr.publish(a, ca) + corr.publish(b, cb))
    assert b.status == "failed"
    reason = one(got["B"], "reply")["payload"]["reason"]
    assert "related_count 3 contradicts the group's 2" in reason and "E-1" in reason
    assert a.status == "running" and a.nodes() == ["fusion_wait"]
    assert a.state is not None
    assert [x["kind"] for x in a.state["data"]["fusion_alerts"]] == ["conflict"]
    assert "B" in a.state["data"]["fusion_group"]["conflicts"]
    # B's failure withdraws it; ESOP's corrected order (another hub order) still completes A's group
    corr.deliver(corr.publish(b, got["B"]))
    c, cc = member("C", "E-2", "hotel_pbx", "花园路18号", ["E-1", "E-2"])
    got = corr.deliver(corr.publish(c, cc))
    assert a.nodes() == ["fusion_dispatch"] and c.nodes() == ["fusion_dispatch"]


def test_member_withdrawn_while_waiting_no_longer_counts() -> None:
    corr = Correlations()
    ids = ["E-1", "E-2", "E-3"]
    a, ca = member("A", "E-1", "internet_line", "花园路18号", ids)
    b, cb = member("B", "E-2", "hotel_pbx", "花园路18号", ids)
    corr.deliver(corr.publish(a, ca) + corr.publish(b, cb))
    assert a.state is not None and a.state["data"]["fusion_group"]["arrived"] == 2
    out = b.send({"type": "cancel", "reason": "ESOP 撤单", "by": "esop"})
    assert b.status == "cancelled" and one(out, "publish")["payload"] == {"withdrawn": True}
    assert calls(out, "cancel_member") == []  # nothing was dispatched yet
    corr.deliver(corr.publish(b, out))
    assert a.state["data"]["fusion_group"]["arrived"] == 1
    c, cc = member("C", "E-3", "camera", "花园路18号", ids)
    corr.deliver(corr.publish(c, cc))
    assert a.nodes() == ["fusion_wait"] and c.nodes() == ["fusion_wait"]  # 2 of 3: B's message was taken back


def timed_out() -> tuple[Driver, Correlations]:
    corr = Correlations()
    a, ca = member("A", "E-1", "hotel_pbx", "花园路18号", ["E-1", "E-2"])
    corr.publish(a, ca)
    timer = one(ca, "start_timer")
    assert timer["at"] == a.now + 600  # the product's wait from config/fusion.yaml, not the default 3600
    a.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=600)
    assert a.state is not None and a.state["data"]["fusion_group"]["state"] == "incomplete"
    assert a.state["data"]["fusion_alerts"][-1]["kind"] == "incomplete" and a.nodes() == ["fusion_wait"]
    return a, corr


def decide(d: Driver, decision: str) -> list[dict[str, Any]]:
    return d.send({"type": "submission", "node": "fusion_wait", "fields": {"decision": decision},
                   "user": {"id": "operator:ops"}})


def test_timeout_then_release_partial() -> None:
    a, _ = timed_out()
    cmds = decide(a, "release")
    assert a.state is not None and a.state["data"]["fusion_group"]["state"] == "released"
    assert calls(cmds, "construction_order")[0]["payload"]["task"]["group_orders"] == ["A"]


def test_timeout_then_keep_waiting_and_a_late_member_completes() -> None:
    a, corr = timed_out()
    cmds = decide(a, "wait")
    assert one(cmds, "start_timer")["at"] == a.now + 600
    assert a.state is not None and a.state["data"]["fusion_group"]["state"] == "waiting"
    b, cb = member("B", "E-2", "internet_line", "花园路18号", ["E-1", "E-2"])
    got = corr.deliver(corr.publish(b, cb))
    assert len(calls(got["A"], "construction_order")) == 1 and a.nodes() == ["fusion_dispatch"]


def test_timeout_then_cancel() -> None:
    a, _ = timed_out()
    cmds = decide(a, "cancel")
    assert a.status == "cancelled" and one(cmds, "publish")["payload"] == {"withdrawn": True}
    assert a.state is not None and a.state["cancelled_by"] == "operator:ops"


def test_unknown_decision_is_refused_to_the_submitter() -> None:
    a, _ = timed_out()
    cmds = decide(a, "maybe")
    assert one(cmds, "reply")["errors"][0]["field"] == "decision" and a.nodes() == ["fusion_wait"]


def dispatched_pair() -> tuple[Driver, Driver, dict[str, list[dict[str, Any]]]]:
    corr = Correlations()
    a, ca = member("A", "E-1", "internet_line", "花园路18号", ["E-1", "E-2"])
    b, cb = member("B", "E-2", "camera", "花园路18号", ["E-1", "E-2"])
    return a, b, corr.deliver(corr.publish(a, ca) + corr.publish(b, cb))


def test_cancel_while_construction_pending_updates_the_task() -> None:
    """D.1.8 注销 while the visit is pending: executed at once, the task is told; the other goes on."""
    a, b, _ = dispatched_pair()
    cmds = b.send({"type": "cancel", "reason": "ESOP 注销", "by": "esop"})
    assert b.status == "cancelled" and len(calls(cmds, "cancel_member")) == 1
    assert a.status == "running" and a.nodes() == ["fusion_dispatch"]


def test_cancel_after_construction_recovers_devices() -> None:
    """D.1.8 注销 after the visit: device recovery at the maintenance system, at once."""
    a, b, got = dispatched_pair()
    call_b = one(got["B"], "send_call")
    b.send({"type": "call_result", "call_id": call_b["call_id"], "result": {"status": "completed"}})
    cmds = b.send({"type": "cancel", "reason": "ESOP 注销", "by": "esop"})
    recovery = calls(cmds, "device_recovery")
    assert b.status == "cancelled" and len(recovery) == 1 and calls(cmds, "cancel_member") == []
    assert recovery[0]["payload"] == {"taskId": call_b["payload"]["task"]["task_id"], "orderId": "E-2",
                                      "hubOrderId": "B"}
    assert a.status == "running" and a.nodes() == ["fusion_dispatch"]


def test_suspend_of_a_member_holds_it_tells_the_task_and_the_rest_go_on() -> None:
    """D.1.8 停机: the member is held at once and the maintenance system is told in the same step
    (the fragment's on_suspend: the task is updated); nothing else goes out for it; the other's reply
    moves the other. Resume tells the task again, then B's kept callback completes its visit."""
    a, b, got = dispatched_pair()
    task = one(got["B"], "send_call")["payload"]["task"]["task_id"]
    cmds = b.send({"type": "suspend", "reason": "ESOP 停机", "by": "esop"}, after=10)
    assert b.state is not None and b.state["suspended"]
    notice = one(cmds, "send_report")
    assert (notice["partner"], notice["operation"], notice["on"], notice["gate"]) == (
        "maintenance", "suspend_member", "suspend", False)
    assert notice["payload"] == {"taskId": task, "orderId": "E-2", "hubOrderId": "B", "reason": "ESOP 停机",
                                 "suspendedAt": str(int(b.now))}
    assert of_type(cmds, "send_call") == [] and of_type(cmds, "start_timer") == []
    # the notice's own answer is nobody's event: it is not kept for the resume
    b.send({"type": "report_result", "report_id": notice["report_id"], "ok": True})
    assert b.state["suspended"]["events"] == []
    call_a, call_b = one(got["A"], "send_call"), one(got["B"], "send_call")
    a.send({"type": "call_result", "call_id": call_a["call_id"], "result": {"status": "completed"}})
    assert a.nodes() == ["after_fusion"] and b.nodes() == ["fusion_dispatch"]
    b.send({"type": "call_result", "call_id": call_b["call_id"], "via": "callback", "result": {"status": "completed"}})
    assert b.nodes() == ["fusion_dispatch"]  # held: kept, not applied
    cmds = b.send({"type": "resume", "by": "ops"}, after=50)
    resumed = one(cmds, "send_report")
    assert (resumed["operation"], resumed["on"]) == ("resume_member", "resume")
    assert resumed["payload"] == {"taskId": task, "orderId": "E-2", "hubOrderId": "B", "resumedAt": str(int(b.now))}
    assert cmds.index(resumed) == 0  # told first, then the kept callback moves the member on
    assert b.nodes() == ["after_fusion"]


def test_suspend_after_the_construction_or_while_waiting_tells_nobody() -> None:
    """The fragment's notices are ``during: active``: a member still waiting for its group, or past
    its visit, has no pending task to update."""
    corr = Correlations()
    a, ca = member("A", "E-1", "internet_line", "花园路18号", ["E-1", "E-2"])
    corr.publish(a, ca)
    assert of_type(a.send({"type": "suspend", "reason": "停机"}), "send_report") == []
    _, b, got = dispatched_pair()
    b.send({"type": "call_result", "call_id": one(got["B"], "send_call")["call_id"], "result": {"status": "completed"}})
    assert of_type(b.send({"type": "suspend", "reason": "停机"}), "send_report") == []


def test_an_order_without_fusion_fields_is_a_group_of_one() -> None:
    d = Driver(BP)
    cmds = d.receive("S", external_order_id="E-9", product="internet_line", scenario="open",
                     customer={"name": "x"}, addresses=[{"city": "郑州", "detail": "金水区花园路18号"}])
    assert of_type(cmds, "publish") == [] and calls(cmds, "construction_order")[0]["payload"]["task"]["tasks"] == 1


def test_split_switched_to_the_partner_sends_one_task_for_the_group() -> None:
    """config/fusion.yaml split: {maintenance: partner}: one task id for the whole group, no team (the
    maintenance system splits, as D.1.3 has it)."""
    conf = fusion_config.current()
    fusion_config.use(conf.model_copy(update={"split": {"maintenance": "partner"}}))
    corr = Correlations()
    a, ca = member("A", "E-1", "internet_line", "金水区花园路18号", ["E-1", "E-2"])
    b, cb = member("B", "E-2", "camera", "中原区建设西路11号", ["E-1", "E-2"])
    got = corr.deliver(corr.publish(a, ca) + corr.publish(b, cb))
    ta, tb = (one(got[o], "send_call")["payload"]["task"] for o in ("A", "B"))
    assert ta["task_id"] == tb["task_id"] and ta["split"] == "partner" and ta["tasks"] == 1 and ta["team"] is None
    assert [m["order_id"] for m in ta["members"]] == ["A", "B"]


def test_group_state_and_takers_shown_unmasked() -> None:
    from app.admin.queries import masker
    from flows.fusion.views import mask_group, summary

    rows = [{"order_id": "A", "status": "waiting", "waiting": True, "wait_state": "incomplete", "deadline": 5.0,
             "task_id": None, "business_type": "x", "construction_status": None, "taker": None, "alerts": [{}],
             "installation_address": {"detail": "花园路18号"}},
            {"order_id": "B", "status": "completed", "waiting": False, "wait_state": "complete", "deadline": None,
             "task_id": "T-1", "business_type": "y", "construction_status": "completed",
             "taker": {"name": "李工", "phone": "13900000002"}, "alerts": [],
             "installation_address": {"detail": "花园路18号"}}]
    group = summary("F-1", rows, 2)
    assert group["state"] == "incomplete" and group["tasks"] == 1 and group["deadline"] == 5.0 and group["alerts"] == 1
    shown = mask_group(group, masker(load_partners(ROOT / "config")))
    assert shown["takers"][0]["taker"] == {"name": "李工", "phone": "13900000002"}  # D.1.7: visible
    assert shown["members"][1]["taker"]["phone"] == "13900000002"
    assert shown["members"][0]["installation_address"]["detail"] != "花园路18号"  # the customer's: masked
    assert summary("F-2", [{**rows[1]}], 2)["state"] == "dispatched"
