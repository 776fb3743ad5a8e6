"""A scripted partner world for the catalogue-I blueprints (CATALOGUE P01–P05, P13–P15, P19–P24, P33–P35).

Why: each blueprint's replay recording (tests/fixtures/flows/replay/catalogue1_*.json) is made by driving
the pure engine through this world — every call answered the way its partner answers (synchronously, by
callback — a staged partner's interim callbacks first —, or "processing" to the first result query and
the result to the second), every manual stage submitted with the script's fields (or values its field
rules accept), a P14 sub-flow finished with the construction reply, a fusion wait completed by the other
order of the group. The recorded commands are what the test replays; the calls, reports and final state
the recording shows are its expectations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from flows.graph import Blueprint
from flows.graph.check import load_blueprint, partner_operations
from hub.partners import load_partners
from hub.products import ProductSpec, load_products, sample_extensions
from hub.settings import PROJECT_ROOT
from simulators.fieldapp import sample_fields
from simulators.spec import load_sims
from tests.unit.flows_graph_harness import Driver

CONFIG = PROJECT_ROOT / "config"
SUBMITTER = {"id": "operator:chen.jing"}

#: each partner's answer (its own success rule and error field, G3), by operation; merged with the script's
RESULTS: dict[str, dict[str, Any]] = {
    "design_request": {"code": "0", "design_id": "D-1", "scheme": "OLT-HZ-01 3/1", "needs_construction": True,
                       "assist": "是", "construction": "是"},
    "resource_allocation": {"code": "0", "gpon": "OLT-HZ-01 3/1/5", "sr": "SR-HZ-02"},
    "archive": {"code": "0", "instance_id": "INST-1"},
    "activation": {"code": "0", "config_result": "success", "ne": "PE-HZ-01"},
    "circuit_config": {"code": "0", "circuit": "SPN-C-1"},
    "close_report": {"checkResult": "1", "parameterValue": "success"},
    "progress_report": {"checkResult": "1"},
    "account_open": {"resultCode": "0", "account": "dyn-0001@zj", "password_set": True},
    "install_dispatch": {"code": "0", "result": "success", "installer": "周工"},
    "todo": {"code": "0", "result": "success", "sn": "SN-CAM-0001"},
    "verify": {"code": "0", "url": "https://vgw.example/play/CAM-1"},
    "camera_open": {"code": "0", "account": "cam-acc-1"},
    "device_exchange": {"code": "0", "sn": "AP-SN-1", "mac": "00:11:22:33:44:55", "address": "文一西路 1 号"},
    "instance_open": {"code": "0", "instance": "SEC-1", "account": "sec-admin"},
    "compute_open": {"code": "0", "vpc": "vpc-1", "subnet": "subnet-1", "host": "host-1"},
    "fusion_dispatch": {"code": "0", "status": "completed", "result": "success"},
    "install_order": {"code": "0", "status": "completed"},
    "config_release": {"code": "0", "released": True},
}
_FAIL = {"code": "1", "msg": "模拟失败", "message": "模拟失败", "resultCode": "1", "resultMsg": "模拟失败",
         "resultDesc": "模拟失败", "checkResult": "0", "parameterValue": "ESOP模拟失败"}


@functools.cache
def _operations() -> dict[str, set[str]]:
    return partner_operations(load_partners(CONFIG))


@functools.cache
def blueprint(rel: str) -> Blueprint:
    """A shipped blueprint, checked against the partner files as the worker loads it (once per file)."""
    return load_blueprint(PROJECT_ROOT / rel, operations=_operations(), blueprints={"p14-construction"})


@dataclass
class Script:
    """What happens to one order: its data, the manual submissions per stage (in order; a stage with
    none gets values its rules accept), partner results over the defaults, calls refused once."""

    order: dict[str, Any]
    submissions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    reject: list[str] = field(default_factory=list)  # "partner.operation", refused the first time
    subflow: dict[str, Any] = field(default_factory=lambda: {"construction": {
        "code": "0", "manager": "王工", "phone": "13800000000", "status": "completed", "investment": 12000}})


def order(product: str, scenario: str, external_id: str, **extra: Any) -> dict[str, Any]:
    """A canonical order (hub/order.py WorkOrder) as the intake hands it to the engine."""
    data: dict[str, Any] = {"external_order_id": external_id, "product": product, "scenario": scenario,
                            "customer": {"name": "测试客户"},
                            "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}],
                            "bandwidth_mbps": 100, "extensions": {}}
    spec = _products().get(product)
    for path, value in (sample_extensions(spec, scenario) if spec else {}).items():  # the product's typed fields
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        target.setdefault(last, value)
    data.update(extra)
    return data


@functools.cache
def _products() -> dict[str, ProductSpec]:
    return load_products(CONFIG)


def drive(bp: Blueprint, script: Script, *, max_steps: int = 400) -> Driver:
    """Run one order through ``bp`` until it ends or waits for something the script does not give."""
    d = Driver(bp)
    submissions = {k: list(v) for k, v in script.submissions.items()}
    rejects = list(script.reject)
    polled: set[str] = set()
    queue = list(d.send({"type": "order_received", "order_id": "O1", "data": script.order}))
    while d.status == "running" and len(d.steps) < max_steps:
        if not queue:
            waiting = [t["node"] for t in d.state["tokens"].values()  # type: ignore[index]
                       if bp.nodes[t["node"]].kind == "user"]
            if not waiting:
                break
            node = waiting[0]
            fields = submissions[node].pop(0) if submissions.get(node) else sample_fields(
                bp.nodes[node].fields)  # type: ignore[attr-defined]
            queue += d.send({"type": "submission", "node": node, "fields": fields, "user": SUBMITTER}, after=600)
            continue
        c = queue.pop(0)
        queue += _answer(d, bp, script, c, rejects, polled)
    return d


def _answer(d: Driver, bp: Blueprint, script: Script, c: dict[str, Any], rejects: list[str],
            polled: set[str]) -> list[dict[str, Any]]:
    t = c["type"]
    if t == "send_report":
        if not c.get("gate"):
            return []
        return d.send({"type": "report_result", "report_id": c["report_id"], "ok": True}, after=1)
    if t == "start_subflow":
        return d.send({"type": "subflow_finished", "child_id": c["child_id"], "status": "completed",
                       "data": script.subflow}, after=3600)
    if t == "publish":  # the other members of the fusion group arrive, each naming the same group
        out: list[dict[str, Any]] = []
        mine = c["payload"]
        others = [x for x in mine.get("related_order_ids") or [] if x != mine.get("external_order_id")]
        for i, ext in enumerate(others):
            peer = {**mine, "external_order_id": ext, "at": mine.get("at", 0) + 1,
                    "related_order_ids": sorted({*mine.get("related_order_ids", []), mine["external_order_id"]})}
            out += d.send({"type": "message", "key": c["key"], "order_id": f"O{i + 2}", "payload": peer}, after=60)
        return out
    if t == "start_timer":
        return d.send({"type": "timer_fired", "timer_id": c["timer_id"]}, after=30)
    if t != "send_call":
        return []
    if c["purpose"] == "poll":  # the result query: "processing" the first time, then the call's result
        target = c["payload"]["call_id"]
        if target not in polled:
            polled.add(target)
            return d.send({"type": "call_result", "call_id": target, "pending": True, "via": "poll"}, after=1)
        return d.send({"type": "call_result", "call_id": target, "via": "poll",  # as flows/runtime/translate.py
                       "result": {"code": "0", "status": "success", "ok": True}}, after=1)
    if c["purpose"] != "call":
        return []
    key = f"{c['partner']}.{c['operation']}"
    ok = key not in rejects
    if not ok:
        rejects.remove(key)
    result = {**RESULTS.get(c["operation"], {"code": "0", "ref": "R-1"}), **script.results.get(key, {})} if ok \
        else dict(_FAIL)
    mode = _mode(bp, c)
    if mode == "sync":  # as flows/runtime/translate.py hands it over: a REST answer is {http_status, body}
        if c["partner"] != "esop":
            result = {"http_status": 200, "body": result, "ok": ok,
                      **({} if ok else {"error": "模拟失败"})}
        return d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok, "result": result, "via": "sync"},
                      after=1)
    cmds = d.send({"type": "call_result", "call_id": c["call_id"], "pending": True, "via": "sync"}, after=1)
    if mode == "poll":
        return cmds
    for _ in range(_interim_stages().get(key, 0) if ok else 0):  # a staged partner's interim callbacks
        cmds += d.send({"type": "call_result", "call_id": c["call_id"], "pending": True, "via": "callback"}, after=10)
    return cmds + d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok, "result": result,
                          "via": "callback"}, after=30)


@functools.cache
def _interim_stages() -> dict[str, int]:
    """partner.operation → interim callbacks before the result, as the partner's simulator replies in
    stages (simulators/partners/*.yaml ``reply: staged``: WSP's fusion_dispatch, the construction
    platform's 阶段回复); what flows/runtime/translate.py makes of each: ``pending`` via callback."""
    return {f"{name}.{op_name}": len(op.stages) - 1 for name, sim in load_sims().items()
            for op_name, op in sim.operations.items() if op.reply == "staged"}


def _mode(bp: Blueprint, c: dict[str, Any]) -> str:
    node = bp.nodes[c["node"]]
    for s in node.steps:  # type: ignore[attr-defined]
        if s.partner == c["partner"] and s.operation == c["operation"]:
            return str(s.mode)
    return "sync"


def summary(d: Driver) -> dict[str, Any]:
    """What a user of the hub sees of the order: calls in order, reports, stages entered, the end."""
    calls = [f"{c['partner']}.{c['operation']}" for s in d.steps for c in s["commands"]
             if c["type"] == "send_call" and c["purpose"] == "call"]
    reports = [f"{c['partner']}.{c['operation']}" for s in d.steps for c in s["commands"] if c["type"] == "send_report"]
    subflows = [c["blueprint"] for s in d.steps for c in s["commands"] if c["type"] == "start_subflow"]
    replies = [c for s in d.steps for c in s["commands"] if c["type"] == "reply" and c.get("to") != "submitter"]
    published = [c["key"] for s in d.steps for c in s["commands"] if c["type"] == "publish"]
    assert d.state is not None
    path = [t["node"] for t in d.state["trail"]]  # the stages in the order entered (a loop shows one again)
    return {"path": path, "calls": calls, "reports": reports, "subflows": subflows, "published": published,
            "status": d.state["status"], "reply": replies[-1]["payload"] if replies else None}
