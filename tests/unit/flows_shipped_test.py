"""The two shipped v2 blueprints (config/flows/internet_line/open.yaml, config/flows/5g_lan/open.yaml),
driven through the pure engine with an injected clock: what a user of the hub notices — which partner
operations are called in which order, which progress reports go to whom, what a manual submission is
told, how the order ends — plus the replay recordings that fail when a blueprint edit would change
what a running order does.

CATALOGUE P02.1 (internet line open: verification stage, SPN/PTN branch) and P25.2 (5G LAN open: the
close-out to ESOP only, the ten construction fields, gated B001…B006). Re-record a meant change with
``.venv/bin/python -m tests.unit.flows_shipped_test``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.graph import Blueprint, step
from flows.graph.check import load_blueprint, partner_operations
from hub.partners import load_partners
from hub.settings import PROJECT_ROOT
from simulators.fieldapp import sample_fields
from simulators.server import REST_ROUTES
from tests.unit.flows_graph_harness import FIXTURES, Driver, of_type, record

CONFIG = PROJECT_ROOT / "config"
INTERNET = "config/flows/internet_line/open.yaml"
LAN = "config/flows/5g_lan/open.yaml"
REPLAYS = FIXTURES / "replay"
SUBMITTER = {"id": "operator:li.qiang", "team": "core-network-5g"}

#: the ten fields of 核心网工程施工 (§3.1.4.1.1(2)); the first four are those v1 did not ask for
CONSTRUCTION: dict[str, Any] = {
    "design_start": "2026-01-05 09:00", "design_finish": "2026-01-06 18:00",
    "construction_start": "2026-01-07", "construction_finish": "2026-01-09",
    "designer": "李工", "designer_phone": "13900000001", "construction_manager": "王工",
    "construction_manager_phone": "13900000002", "investment": 12000, "resource_entry_result": "成功"}
DESIGN = {"upf_list": ["UPF-HZ-1"], "smf_list": ["SMF-1"], "udm_list": ["UDM-1"]}
LAN_CODES = ["B001processing", "B002finished", "B003finished", "B005finished", "B004finished", "B006processing"]


def shipped(rel: str) -> Blueprint:
    return load_blueprint(PROJECT_ROOT / rel, operations=partner_operations(load_partners(CONFIG)),
                          blueprints=set())


def order(product: str, external_id: str, *, city: str = "杭州", access_type: str | None = "PON") -> dict[str, Any]:
    """A canonical order (hub/order.py WorkOrder) as intake hands it to the engine."""
    data: dict[str, Any] = {"external_order_id": external_id, "product": product, "scenario": "open",
                            "customer": {"name": "测试客户"}, "addresses": [{"city": city, "detail": "文一西路 1 号"}],
                            "bandwidth_mbps": 100, "extensions": {}}
    if access_type is not None:
        data["access_type"] = access_type
    return data


# ---- a partner world that answers the engine's commands -------------------------------------------------
class Partners:
    """Answers calls and reports the way the simulators do (simulators/server.py), one event at a time.

    ``reject_reports`` / ``reject_calls``: (partner, code-or-operation) pairs answered with a failure
    once each; ``results``: operation → the partner's result (merged over the defaults)."""

    def __init__(self, d: Driver, *, reject_reports: set[tuple[str, str]] | None = None,
                 reject_calls: set[tuple[str, str]] | None = None,
                 results: dict[str, dict[str, Any]] | None = None) -> None:
        self.d = d
        self.reject_reports = set(reject_reports or ())
        self.reject_calls = set(reject_calls or ())
        self.results = results or {}

    def result_of(self, operation: str) -> dict[str, Any]:
        defaults: dict[str, dict[str, Any]] = {
            "design_request": {"code": "0", "design_id": "D-1", "scheme": "PON access, OLT-HZ-01 port 3/1",
                               "needs_construction": True},
            "construction_order": {"code": "0", "manager": "王工", "phone": "13800000000", "status": "completed"},
            "activation": {"code": "0", "config_result": "success", "ne": "PE-HZ-01", "vlan": 1001},
            "circuit_config": {"code": "0", "circuit": "SPN-C-1"},
            "upf_config": {"code": 0, "message": "accepted"},
            "close_report": {"checkResult": 1, "parameterValue": "success"},
        }
        base = defaults.get(operation, {"code": "0", "ref": "R-1"})
        return {**base, **self.results.get(operation, {})}

    def answer(self, commands: list[dict[str, Any]]) -> None:
        """Answer every call and report of ``commands`` and of what follows, until the order waits
        for a person (a manual stage, a failed gate report) or ends."""
        queue = list(commands)
        while queue:
            c = queue.pop(0)
            if c["type"] == "send_report" and c["gate"]:
                key = (c["partner"], c["payload"].get("progress_code", ""))
                ok = key not in self.reject_reports
                self.reject_reports.discard(key)
                queue += self.d.send({"type": "report_result", "report_id": c["report_id"], "ok": ok,
                                      **({} if ok else {"error": f"{c['partner']} 模拟失败"})}, after=1)
            elif c["type"] == "send_call" and c["purpose"] == "call":
                queue += self._call(c)

    def _call(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        key = (c["partner"], c["operation"])
        ok = key not in self.reject_calls
        self.reject_calls.discard(key)
        result = self.result_of(c["operation"]) if ok else {"code": "1", "msg": "资管模拟失败", "message": "模拟失败",
                                                            "checkResult": 0, "parameterValue": "ESOP模拟失败"}
        node = self.d.bp.nodes[c["node"]]
        mode = node.steps[0].mode  # type: ignore[attr-defined]  # only call nodes send calls
        if mode == "callback":  # delivery's answer only says "accepted"; the result comes by callback
            self.d.send({"type": "call_result", "call_id": c["call_id"], "pending": True, "via": "sync"}, after=1)
            return self.d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok, "result": result,
                                "via": "callback"}, after=30)
        return self.d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok, "result": result,
                            "via": "sync"}, after=1)


def calls_made(d: Driver) -> list[tuple[str, str]]:
    return [(c["partner"], c["operation"]) for s in d.steps for c in of_type(s["commands"], "send_call")]


def reports_to(d: Driver, partner: str) -> list[dict[str, Any]]:
    return [c for s in d.steps for c in of_type(s["commands"], "send_report") if c["partner"] == partner]


def submit(d: Driver, node: str, fields: dict[str, Any], user: dict[str, Any] | None = None,
           ) -> list[dict[str, Any]]:
    return d.send({"type": "submission", "node": node, "fields": fields, "user": user or SUBMITTER}, after=600)


def errors_of(commands: list[dict[str, Any]]) -> dict[str, str]:
    (reply,) = [c for c in commands if c["type"] == "reply" and c["to"] == "submitter"]
    return {e["field"]: e["message"] for e in reply["errors"]}


# ---- load-time checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", [INTERNET, LAN])
def test_shipped_blueprint_loads_clean_against_the_partner_files(rel: str) -> None:
    bp = shipped(rel)
    assert bp.catalogue in {"P02.1", "P25.2"} and bp.product and bp.scenario == "open"


@pytest.mark.parametrize("rel", [INTERNET, LAN])
def test_every_operation_a_shipped_blueprint_calls_is_answered_by_the_simulators(rel: str) -> None:
    """``hub demo`` and the integration tests run these blueprints against simulators/server.py: an
    operation it does not serve (the transmission workbench's circuit_config) would hang an order."""
    partners = load_partners(CONFIG)
    served = {(p, op) for p, routes in REST_ROUTES.items() for op, _ in routes.values()}
    served |= {("esop", "close_report"), ("esop", "progress_report")}  # the SOAP service
    for node in shipped(rel).nodes.values():
        for _, partner, operation in node.calls():
            assert (partner, operation) in served, (partner, operation)
            outbound = partners[partner].outbound
            assert outbound is not None
            path = outbound.config["operations"][operation].get("path")
            if path:  # the partner file's path is the simulator's route
                assert REST_ROUTES[partner][path.rsplit("/", 1)[1]][0] == operation


@pytest.mark.parametrize("rel", [INTERNET, LAN])
def test_the_demo_field_app_completes_every_shipped_order_from_the_field_rules(rel: str) -> None:
    """``hub demo`` submits manual stages with simulators/fieldapp.py samples: every manual stage of
    the shipped blueprints must accept them, or the demo's orders never complete."""
    bp = shipped(rel)
    d = Driver(bp)
    p = Partners(d)
    product = "internet_line" if rel == INTERNET else "5g_lan"
    p.answer(d.receive("O1", **order(product, "DEMO-1")))
    while d.status == "running":
        (node,) = d.nodes()
        spec = bp.nodes[node]
        assert spec.kind == "user", node
        cmds = submit(d, node, sample_fields(list(getattr(spec, "fields", []))), {"id": "field-app:demo"})
        assert not [c for c in cmds if c["type"] == "reply" and c.get("errors")], cmds
        p.answer(cmds)
    assert d.status == "completed"


# ---- internet line (P02.1) -----------------------------------------------------------------------------
def internet(external_id: str = "ESOP-1", **kw: Any) -> tuple[Driver, Partners]:
    d = Driver(shipped(INTERNET))
    return d, Partners(d, **kw.pop("partners", {}))


def run_internet(d: Driver, p: Partners, data: dict[str, Any], verification: dict[str, Any] | None = None) -> None:
    p.answer(d.receive("O1", **data))
    assert d.nodes() == ["verification"], d.nodes()
    p.answer(submit(d, "verification", verification or {}, {"id": "operator:zhang.wei"}))


def test_internet_line_with_construction_calls_every_partner_in_order_and_closes_to_esop() -> None:
    d, p = internet()
    run_internet(d, p, order("internet_line", "ESOP-1"))
    assert calls_made(d) == [("resource", "design_request"), ("construction", "construction_order"),
                             ("resource", "resource_entry"), ("resource", "resource_config"),
                             ("ip_workbench", "activation"), ("resource", "archive"), ("esop", "close_report")]
    assert d.status == "completed"
    assert of_type(d.steps[-1]["commands"], "finish") == [{"type": "finish", "status": "completed", "reason": "done"}]
    close = of_type(d.steps[-2]["commands"], "send_call")[0]
    assert close["payload"]["orderId"] == "ESOP-1" and close["payload"]["hubOrderId"] == "O1"
    assert not [c for s in d.steps for c in of_type(s["commands"], "send_report")]  # ESOP has no progress codes here
    assert d.state is not None and d.state["data"]["team"] == "hz-install-1"  # G8: team by city
    assert d.state["data"]["_operators"]["accept"] == "系统自动"


def test_internet_line_design_with_resources_skips_construction() -> None:
    d, p = internet(partners={"results": {"design_request": {"needs_construction": False}}})
    run_internet(d, p, order("internet_line", "ESOP-2"))
    assert ("construction", "construction_order") not in calls_made(d)
    assert calls_made(d)[:2] == [("resource", "design_request"), ("resource", "resource_entry")]
    assert d.status == "completed"


@pytest.mark.parametrize("access", ["SPN", "PTN"])
def test_internet_line_spn_and_ptn_activate_through_the_transmission_workbench(access: str) -> None:
    d, p = internet()
    run_internet(d, p, order("internet_line", "ESOP-3", access_type=access))
    made = calls_made(d)
    assert ("transmission_workbench", "circuit_config") in made and ("ip_workbench", "activation") not in made
    tw = next(c for s in d.steps for c in of_type(s["commands"], "send_call")
              if c["partner"] == "transmission_workbench")
    assert tw["payload"]["accessType"] == access and tw["node"] == "activation_transport"
    assert d.status == "completed"


def test_internet_line_access_type_returned_by_the_design_wins_over_the_order() -> None:
    """§…12: 根据资管返回的接入方式 — the order says PON, 资管 designed an SPN access."""
    d, p = internet(partners={"results": {"design_request": {"access_type": "SPN"}}})
    run_internet(d, p, order("internet_line", "ESOP-4", access_type="PON"))
    assert ("transmission_workbench", "circuit_config") in calls_made(d)


def test_internet_line_without_access_type_uses_the_ip_workbench() -> None:
    d, p = internet()
    run_internet(d, p, order("internet_line", "ESOP-5", city="温州", access_type=None))
    assert ("ip_workbench", "activation") in calls_made(d) and d.status == "completed"
    assert d.state is not None and d.state["data"]["team"] == "province-install"


def test_internet_line_verification_checks_the_international_site_fields() -> None:
    """§…8: 是否需要访问国际网站 / 是否可正常访问 / the failing site's name and URL."""
    d, p = internet()
    p.answer(d.receive("O1", **order("internet_line", "ESOP-6")))
    assert d.nodes() == ["verification"]
    errs = errors_of(submit(d, "verification", {"needs_intl_sites": "是"}))
    assert errs == {"intl_sites_ok": "required"}
    errs = errors_of(submit(d, "verification", {"needs_intl_sites": "是", "intl_sites_ok": "否"}))
    assert errs == {"intl_site_name": "required", "intl_site_url": "required"}
    errs = errors_of(submit(d, "verification", {"needs_intl_sites": "是", "intl_sites_ok": "否",
                                                "intl_site_name": "Google", "intl_site_url": "google.com"}))
    assert set(errs) == {"intl_site_url"}
    assert errors_of(submit(d, "verification", {"needs_intl_sites": "也许"})) == {
        "needs_intl_sites": "must be one of ['是', '否']"}
    assert d.nodes() == ["verification"]  # G4: nothing submitted
    p.answer(submit(d, "verification", {"needs_intl_sites": "是", "intl_sites_ok": "否", "intl_site_name": "Google",
                                        "intl_site_url": "https://www.google.com"}))
    assert d.status == "completed"
    assert d.state is not None and d.state["data"]["intl_site_url"] == "https://www.google.com"


def test_internet_line_verification_defaults_to_no_international_sites() -> None:
    d, p = internet()
    p.answer(d.receive("O1", **order("internet_line", "ESOP-7")))
    p.answer(submit(d, "verification", {}))
    assert d.status == "completed"
    assert d.state is not None and d.state["data"]["needs_intl_sites"] == "否"


def test_internet_line_failed_call_waits_for_the_user_and_is_sent_again() -> None:
    """G3: a failed activation shows "X失败（reason），请解决问题后重新点击X按钮" and the order waits;
    submitting the failed-call stage sends the same operation again (not the whole flow)."""
    d, p = internet(partners={"reject_calls": {("ip_workbench", "activation")}})
    p.answer(d.receive("O1", **order("internet_line", "ESOP-8")))
    assert d.nodes() == ["failed_call"] and d.status == "running"
    assert d.state is not None
    assert d.state["data"]["_calls"][-1]["text"] == "配置下发失败（模拟失败），请解决问题后重新点击配置下发按钮"
    before = len(calls_made(d))
    p.answer(submit(d, "failed_call", {}, {"id": "operator:zhang.wei"}))
    assert calls_made(d)[before:][0] == ("ip_workbench", "activation")
    assert d.nodes() == ["verification"]
    p.answer(submit(d, "verification", {}))
    assert d.status == "completed"
    assert calls_made(d).count(("ip_workbench", "activation")) == 2
    assert calls_made(d).count(("resource", "design_request")) == 1


# ---- 5G LAN (P25.2) ---------------------------------------------------------------------------------
def lan(**kw: Any) -> tuple[Driver, Partners]:
    d = Driver(shipped(LAN))
    return d, Partners(d, **kw)


def run_lan(d: Driver, p: Partners) -> None:
    p.answer(d.receive("O1", **order("5g_lan", "GRP-5GLAN-1")))
    assert d.nodes() == ["core_design"]
    p.answer(submit(d, "core_design", DESIGN))
    assert d.nodes() == ["core_construction"]
    p.answer(submit(d, "core_construction", CONSTRUCTION))


def test_5g_lan_happy_path_reports_every_code_to_both_and_closes_to_esop_only() -> None:
    d, p = lan()
    run_lan(d, p)
    assert d.status == "completed"
    assert calls_made(d) == [("resource", "config_plan"), ("resource", "resource_allocation"),
                             ("core_workbench", "upf_config"), ("resource", "archive"), ("esop", "close_report")]
    assert not [c for c in calls_made(d) if c[0] == "group"]  # CATALOGUE (7): no close-report to 一编
    for partner in ("group", "esop"):
        sent = reports_to(d, partner)
        assert [r["payload"]["progress_code"] for r in sent] == LAN_CODES
        assert [r["payload"]["desc_outline"] for r in sent] == [1, 2, 2, 2, 2, 1]
        assert all(r["gate"] and r["operation"] == "progress_report" for r in sent)
        assert [r["on"] for r in sent] == ["enter", "exit", "exit", "exit", "exit", "enter"]
    b001, b002 = reports_to(d, "group")[:2]
    # the canonical report fields of v1 (flows/engine.py _report_request), which the partner templates map
    assert set(b001["payload"]) == {"order_id", "external_order_id", "code", "state", "progress_code", "stage",
                                    "stage_title", "team", "operator", "reported_at", "desc_outline"}
    assert b001["payload"]["external_order_id"] == "GRP-5GLAN-1" and b001["payload"]["team"] == "core-network-5g"
    assert (b002["payload"]["operator"], b002["payload"]["team"]) == ("operator:li.qiang", "core-network-5g")  # G1
    assert b002["payload"]["stage_title"] == "核心网工程施工"


def test_5g_lan_failed_entry_report_holds_the_order_until_the_retry_succeeds() -> None:
    """G2: ESOP refuses B001: the order does not enter 业务受理 (no team, no stage work) until the user
    clicks again, and only the failed report is sent again."""
    d, p = lan(reject_reports={("esop", "B001processing")})
    p.answer(d.receive("O1", **order("5g_lan", "GRP-5GLAN-2")))
    assert d.nodes() == ["accept"] and d.state is not None
    (token,) = d.state["tokens"].values()
    assert token["phase"] == "enter" and "team" not in d.state["data"]
    cmds = d.send({"type": "retry", "node": "accept"}, after=60)
    (again,) = of_type(cmds, "send_report")
    assert (again["partner"], again["payload"]["progress_code"]) == ("esop", "B001processing")
    p.answer(cmds)
    assert d.nodes() == ["core_design"]
    assert [r["payload"]["progress_code"] for r in reports_to(d, "group")] == ["B001processing"]
    assert [r["payload"]["progress_code"] for r in reports_to(d, "esop")] == ["B001processing"] * 2


def test_5g_lan_failed_exit_report_keeps_the_stage_until_the_retry_succeeds() -> None:
    d, p = lan(reject_reports={("group", "B002finished")})
    p.answer(d.receive("O1", **order("5g_lan", "GRP-5GLAN-3")))
    p.answer(submit(d, "core_design", DESIGN))
    p.answer(submit(d, "core_construction", CONSTRUCTION))
    assert d.nodes() == ["core_construction"]  # the stage is not left: no allocation call yet
    assert ("resource", "resource_allocation") not in calls_made(d)
    assert d.send({"type": "retry", "node": "core_design"}) == []  # a retry for another stage changes nothing
    cmds = d.send({"type": "retry", "node": "core_construction"}, after=60)
    (again,) = of_type(cmds, "send_report")
    assert again["payload"]["operator"] == "operator:li.qiang"  # re-sent from the same submission
    p.answer(cmds)
    assert d.status == "completed"


def test_5g_lan_construction_submission_names_every_missing_or_invalid_field() -> None:
    """G4: the four fields v1 did not ask for are required, typed and checked; nothing is submitted."""
    d, p = lan()
    p.answer(d.receive("O1", **order("5g_lan", "GRP-5GLAN-4")))
    p.answer(submit(d, "core_design", DESIGN))
    v1_fields = {k: v for k, v in CONSTRUCTION.items()
                 if k not in {"design_start", "design_finish", "construction_start", "construction_finish"}}
    cmds = submit(d, "core_construction", v1_fields)
    assert errors_of(cmds) == {f: "required" for f in
                               ("design_start", "design_finish", "construction_start", "construction_finish")}
    assert not of_type(cmds, "send_report") and d.nodes() == ["core_construction"]
    bad = {**CONSTRUCTION, "design_start": "5号", "designer_phone": "call me", "investment": "一万"}
    errs = errors_of(submit(d, "core_construction", bad))
    assert set(errs) == {"design_start", "designer_phone", "investment"} and errs["investment"] == "must be float"
    assert d.nodes() == ["core_construction"]
    p.answer(submit(d, "core_construction", CONSTRUCTION))
    assert d.status == "completed"


def test_5g_lan_core_design_needs_one_of_each_network_element() -> None:
    d, p = lan()
    p.answer(d.receive("O1", **order("5g_lan", "GRP-5GLAN-5")))
    errs = errors_of(submit(d, "core_design", {"upf_list": ["UPF-HZ-1"], "smf_list": []}))
    assert errs == {"smf_list": "at least 1 items", "udm_list": "required"}
    assert d.nodes() == ["core_design"]


def test_5g_lan_refused_close_report_waits_for_the_user_then_closes_once() -> None:
    d, p = lan(reject_calls={("esop", "close_report")})
    run_lan(d, p)
    assert d.nodes() == ["failed_call"] and d.status == "running"
    assert d.state is not None
    assert d.state["data"]["_calls"][-1]["text"] == (
        "申请ESOP报结失败（ESOP模拟失败），请解决问题后重新点击申请ESOP报结按钮")
    p.answer(submit(d, "failed_call", {}))
    assert d.status == "completed"
    assert calls_made(d).count(("esop", "close_report")) == 2 and calls_made(d).count(("resource", "archive")) == 1


# ---- replay recordings -----------------------------------------------------------------------------
def _internet(data: dict[str, Any], **kw: Any) -> Callable[[], Driver]:
    def scenario() -> Driver:
        d, p = internet(partners=kw)
        run_internet(d, p, data)
        return d
    return scenario


def _lan_happy() -> Driver:
    d, p = lan()
    run_lan(d, p)
    return d


def _lan_report_retry() -> Driver:
    d, p = lan(reject_reports={("esop", "B001processing"), ("group", "B003finished")})
    p.answer(d.receive("O1", **order("5g_lan", "GRP-5GLAN-1")))
    p.answer(d.send({"type": "retry", "node": "accept"}, after=60))
    p.answer(submit(d, "core_design", DESIGN))
    p.answer(submit(d, "core_construction", CONSTRUCTION))
    p.answer(d.send({"type": "retry", "node": "core_allocation"}, after=60))
    return d


def _lan_rejected_submission() -> Driver:
    d, p = lan()
    p.answer(d.receive("O1", **order("5g_lan", "GRP-5GLAN-1")))
    submit(d, "core_design", {"upf_list": ["UPF-HZ-1"]})
    p.answer(submit(d, "core_design", DESIGN))
    submit(d, "core_construction", {**CONSTRUCTION, "construction_finish": "", "designer_phone": "x"})
    p.answer(submit(d, "core_construction", CONSTRUCTION))
    return d


def _lan_close_refused() -> Driver:
    d, p = lan(reject_calls={("esop", "close_report")})
    run_lan(d, p)
    p.answer(submit(d, "failed_call", {}))
    return d


def _internet_failed_call() -> Driver:
    d, p = internet(partners={"reject_calls": {("resource", "resource_config")}})
    p.answer(d.receive("O1", **order("internet_line", "ESOP-1")))
    p.answer(submit(d, "failed_call", {}, {"id": "operator:zhang.wei"}))
    p.answer(submit(d, "verification", {"needs_intl_sites": "是", "intl_sites_ok": "是"}))
    return d


#: recording name → (blueprint file, scenario)
SCENARIOS: dict[str, tuple[str, Callable[[], Driver]]] = {
    "shipped_internet_line_construction": (INTERNET, _internet(order("internet_line", "ESOP-1"))),
    "shipped_internet_line_no_construction": (INTERNET, _internet(
        order("internet_line", "ESOP-1"), results={"design_request": {"needs_construction": False}})),
    "shipped_internet_line_spn": (INTERNET, _internet(order("internet_line", "ESOP-1", access_type="SPN"))),
    "shipped_internet_line_ptn": (INTERNET, _internet(order("internet_line", "ESOP-1", access_type="PTN"))),
    "shipped_internet_line_failed_call": (INTERNET, _internet_failed_call),
    "shipped_5g_lan_happy": (LAN, _lan_happy),
    "shipped_5g_lan_report_retry": (LAN, _lan_report_retry),
    "shipped_5g_lan_rejected_submission": (LAN, _lan_rejected_submission),
    "shipped_5g_lan_close_refused": (LAN, _lan_close_refused),
}


def fixture_ref(rel: str) -> str:
    """How a recording names a shipped blueprint: relative to tests/fixtures/flows/ and without
    ``.yaml``, like the exemplars' (so bench/engine.py and the harness find it the same way)."""
    return os.path.relpath(PROJECT_ROOT / rel, FIXTURES).removesuffix(".yaml")


def replay_shipped(path: Path, blueprint: Blueprint | None = None,
                   ) -> list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]]:
    """Like flows_graph_harness.replay, on a blueprint under config/ (the recording names its file)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    rel = (FIXTURES / f"{doc['blueprint']}.yaml").resolve().relative_to(PROJECT_ROOT)
    bp = blueprint or shipped(str(rel))
    state: dict[str, Any] | None = None
    diffs = []
    for i, s in enumerate(doc["steps"]):
        state, commands = step(bp, state, s["event"], s["at"])
        if commands != s["commands"]:
            diffs.append((i, s["commands"], commands))
    return diffs


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recorded_shipped_orders_replay_to_identical_commands(name: str) -> None:
    path = REPLAYS / f"{name}.json"
    assert path.is_file(), f"missing {path}: re-record (see the module docstring)"
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["blueprint"] == fixture_ref(SCENARIOS[name][0])  # bench/engine.py finds it as an exemplar's
    assert replay_shipped(path) == []


def test_every_path_of_the_shipped_blueprints_is_recorded() -> None:
    """Every node of both blueprints is entered by some recording (failed_call's failure end aside)."""
    for rel in (INTERNET, LAN):
        entered: set[str] = set()
        for name, (bp_file, _) in SCENARIOS.items():
            if bp_file == rel:
                doc = json.loads((REPLAYS / f"{name}.json").read_text(encoding="utf-8"))
                state: dict[str, Any] | None = None
                bp = shipped(rel)
                for s in doc["steps"]:
                    state, _ = step(bp, state, s["event"], s["at"])
                assert state is not None
                entered |= {e["node"] for e in state["trail"]}
        assert set(shipped(rel).nodes) - entered == {"failed"}, rel


def test_an_edit_of_a_shipped_blueprint_that_changes_running_orders_fails_the_replay() -> None:
    """E.g. sending the 5G LAN close-report to 一编 again, as v1 did."""
    bp = shipped(LAN)
    node = bp.nodes["close_report"]
    step0 = node.steps[0]  # type: ignore[attr-defined]  # a call node
    edited = bp.model_copy(update={"nodes": {**bp.nodes, "close_report": node.model_copy(
        update={"steps": [step0.model_copy(update={"partner": "group"})]})}})
    diffs = replay_shipped(REPLAYS / "shipped_5g_lan_happy.json", edited)
    assert diffs, "the edit went unnoticed"
    first = diffs[0]
    (recorded,), (replayed,) = ([c for c in cmds if c["type"] == "send_call"] for cmds in first[1:])
    assert (recorded["partner"], replayed["partner"]) == ("esop", "group")


def _record_all(folder: Path = REPLAYS) -> None:
    for name, (blueprint_file, scenario) in SCENARIOS.items():
        record(folder / f"{name}.json", fixture_ref(blueprint_file), scenario())


if __name__ == "__main__":
    _record_all()
