"""Network configuration task orders (CATALOGUE P37–P40), IoT (D.3) and the delivery test flow (D.4):
each blueprint driven through the pure engine against partners that answer like their simulators —
which partner operations are called, in which order, with which vendor's own fields, how a refusal is
reported back and how the order ends — and each run recorded (tests/fixtures/flows/replay/tasks_*.json)
so an edit that would change what a running order does fails the replay. Re-record a meant change with
``.venv/bin/python -m tests.unit.catalogue_tasks_flows_test``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.graph import Blueprint, step
from tests.unit.flows_graph_harness import Driver, of_type, record
from tests.unit.flows_shipped_test import REPLAYS, fixture_ref, shipped

FLOWS = {
    "p37": "config/flows/pon_cutover/cutover.yaml",
    "p38_join": "config/flows/premises_network/join.yaml",
    "p38_adjust": "config/flows/premises_network/adjust.yaml",
    "p38_leave": "config/flows/premises_network/leave.yaml",
    "p39": "config/flows/premises_network/hang_test.yaml",
    "p40": "config/flows/onu_replacement/onu_replace.yaml",
    "d3_1": "config/flows/iot_class1_cross/open.yaml",
    "d3_2": "config/flows/iot_class1_cross/member_sync.yaml",
    "d3_3": "config/flows/iot_class1_local/open.yaml",
    "d3_4": "config/flows/iot_class23/open.yaml",
    "d3_5": "config/flows/iot_member/open.yaml",
    "d4": "config/flows/line_delivery/delivery_test.yaml",
}
#: each vendor NMS's own success answer (config/partners/pon_nms_*.yaml success rules)
VENDOR_OK = {"huawei": {"code": "0", "message": "ok"}, "zte": {"result": "success", "errorMsg": ""},
             "bell": {"status": "OK", "reason": ""}, "fiberhome": {"retCode": "0", "retMsg": ""}}
VENDOR_NO = {"huawei": {"code": "1", "message": "端口被占用"}, "zte": {"result": "fail", "errorMsg": "端口被占用"},
             "bell": {"status": "NOK", "reason": "端口被占用"}, "fiberhome": {"retCode": "9", "retMsg": "端口被占用"}}
SYNCED = {"status": "success", "rspCode": "0000", "pboss": "synced", "partner_provinces": "synced",
          "ops_platform": "synced", "gateway": "synced", "class1_platform": "synced", "national_platform": "synced",
          "hlr": "opened", "code": "0"}
FIELD_USER = {"id": "operator:chen.jie", "team": "delivery-hz"}


@functools.cache
def blueprint(flow: str) -> Blueprint:
    """The shipped file, loaded once per run (each load parses every partner file for its operations)."""
    return shipped(FLOWS[flow])


class World:
    """Answers the engine's calls the way the simulators do; ``refuse`` (partner, operation) once each,
    ``results`` overrides an answer."""

    def __init__(self, d: Driver, *, refuse: set[tuple[str, str]] | None = None,
                 results: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.d = d
        self.refuse = set(refuse or ())
        self.results = results or {}

    def result(self, partner: str, operation: str, ok: bool) -> dict[str, Any]:
        if partner.startswith("pon_nms_"):
            vendor = partner.removeprefix("pon_nms_")
            base: dict[str, Any] = dict(VENDOR_OK[vendor] if ok else VENDOR_NO[vendor])
            if operation == "onu_status":
                base["state"] = "online"
            if operation == "optical_power":
                base["rx_power_dbm"] = -18.5
            return {**base, **self.results.get((partner, operation), {})}
        if not ok:
            return {"code": "1", "msg": f"{partner} 模拟失败", "resultDesc": "激活失败", "rspCode": "9999",
                    "rspDesc": "BBOSS模拟失败", "status": "fail", "checkResult": 0, "parameterValue": "ESOP模拟失败"}
        answers: dict[str, dict[str, Any]] = {
            "esop": {"checkResult": 1, "parameterValue": "success"},
            "iot_number_pool": {"code": "0", "msisdn": "14800000001", "imsi": "460080000000001",
                                "ki": "0123456789ABCDEF0123456789ABCDEF"},
            "esop_members": {"code": "0", "added": 2}}
        return {**answers.get(partner, SYNCED), **self.results.get((partner, operation), {})}

    def answer(self, commands: list[dict[str, Any]]) -> None:
        queue = list(commands)
        while queue:
            c = queue.pop(0)
            if c["type"] == "send_call" and c["purpose"] == "call":
                queue += self._call(c)

    def _call(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        key = (c["partner"], c["operation"])
        ok = key not in self.refuse
        self.refuse.discard(key)
        result = self.result(c["partner"], c["operation"], ok)
        node = self.d.bp.nodes[c["node"]]
        mode = next(s.mode for s in node.steps if s.operation == c["operation"])  # type: ignore[attr-defined]  # call nodes only
        if mode == "callback":  # flows/runtime/translate.py: the callback's status becomes result.ok
            result = {**result, "ok": ok}
            self.d.send({"type": "call_result", "call_id": c["call_id"], "pending": True, "via": "sync"}, after=1)
            return self.d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok, "result": result,
                                "via": "callback"}, after=20)
        # a synchronous answer: the REST sink's response {http_status, body} (flows/runtime/translate.py)
        answer: dict[str, Any] = {"http_status": 200, "body": result, "ok": ok}
        if not ok:
            answer["error"] = f"{c['partner']} refused"
        return self.d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok, "result": answer,
                            "via": "sync"}, after=1)


def task_order(product: str, scenario: str, external_id: str, **extensions: Any) -> dict[str, Any]:
    """A canonical order (hub/order.py WorkOrder) as the intake hands it to the engine."""
    return {"external_order_id": external_id, "product": product, "scenario": scenario,
            "customer": {"name": "测试客户"}, "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}],
            "extensions": extensions}


PON = {"olt": "OLT-HZ-XH-01", "pon_port": "0/3/1", "onu_sn": "HWTC1234ABCD"}


def calls(d: Driver) -> list[tuple[str, str]]:
    return [(c["partner"], c["operation"]) for s in d.steps for c in of_type(s["commands"], "send_call")]


def payloads(d: Driver, operation: str) -> list[dict[str, Any]]:
    return [c["payload"] for s in d.steps for c in of_type(s["commands"], "send_call") if c["operation"] == operation]


def submit(d: Driver, node: str, fields: dict[str, Any]) -> list[dict[str, Any]]:
    return d.send({"type": "submission", "node": node, "fields": fields, "user": FIELD_USER}, after=3600)


def run(flow: str, data: dict[str, Any], **world: Any) -> tuple[Driver, World]:
    d = Driver(blueprint(flow))
    w = World(d, **world)
    w.answer(d.receive("T1", **data))
    return d, w


def fire_timer(d: Driver, w: World) -> None:
    (timer,) = [c for c in d.steps[-1]["commands"] if c["type"] == "start_timer"]
    w.answer(d.send({"type": "timer_fired", "timer_id": timer["timer_id"]}, after=timer["at"] - d.now))


# ---- the recorded runs: name → (flow, drive) ---------------------------------------------------------------
def _p37_huawei() -> Driver:
    return run("p37", task_order("pon_cutover", "cutover", "RC-CUT-1", vendor="huawei", service_type="internet_line",
                                 olt="OLT-HZ-01", old_pon_port="0/1/1", new_pon_port="0/2/1"))[0]


def _p37_zte_precheck_refused() -> Driver:
    return run("p37", task_order("pon_cutover", "cutover", "RC-CUT-2", vendor="zte", service_type="voice_line",
                                 olt="OLT-NB-01", old_pon_port="1/1/1", new_pon_port="1/1/2"),
               refuse={("pon_nms_zte", "precheck")})[0]


def _p37_unknown_vendor() -> Driver:
    return run("p37", task_order("pon_cutover", "cutover", "RC-CUT-3", vendor="alcatel", service_type="vpn",
                                 olt="O", old_pon_port="1", new_pon_port="2"))[0]


def _p38(flow: str, vendor: str, refuse: set[tuple[str, str]] | None = None) -> Callable[[], Driver]:
    scenario = flow.removeprefix("p38_")
    return lambda: run(flow, task_order("premises_network", scenario, f"WSP-{scenario}-1", vendor=vendor, **PON),
                       refuse=refuse)[0]


def _p39(vendor: str, power: float) -> Callable[[], Driver]:
    def drive() -> Driver:
        d, w = run("p39", task_order("premises_network", "hang_test", f"WSP-HT-{vendor}", vendor=vendor,
                                     test_minutes=45, **PON),
                   results={(f"pon_nms_{vendor}", "optical_power"): {"rx_power_dbm": power}})
        fire_timer(d, w)
        return d
    return drive


def _p40(refuse: set[tuple[str, str]] | None = None) -> Callable[[], Driver]:
    return lambda: run("p40", task_order("onu_replacement", "onu_replace", "RC-ONU-1", vendor="fiberhome",
                                         service_type="mpls_vpn", olt="OLT-WZ-01", pon_port="0/5/2",
                                         old_onu_sn="FHTT0001", new_onu_sn="FHTT0002",
                                         new_onu_mac="00:11:22:33:44:55"), refuse=refuse)[0]


IOT = {"ec_code": "EC571000123", "iot_product": "IOT-CLASS1-CONNECT", "partner_provinces": ["JS", "SH"]}


def _iot(flow: str, scenario: str, product: str, results: dict[tuple[str, str], dict[str, Any]] | None = None,
         **ext: Any) -> Callable[[], Driver]:
    return lambda: run(flow, task_order(product, scenario, f"ESOP-IOT-{flow}", **IOT, **ext), results=results)[0]


MPLS = {"line_type": "MPLS_VPN", "es": 0, "avg_rtd_ms": 12.5, "packet_loss_pct": 0.01, "test_passed": "是"}


def _d4(e2e_fails_once: bool = False) -> Callable[[], Driver]:
    def drive() -> Driver:
        d, w = run("d4", task_order("line_delivery", "delivery_test", "ESOP-DLV-1"))
        w.answer(submit(d, "local_test", {"line_type": "MPLS_VPN", "es": 0}))  # G4: refused, token stays
        w.answer(submit(d, "local_test", {**MPLS, "local_test_report": "sftp://files/dlv/1/local.pdf"}))
        w.answer(submit(d, "local_completion", {"completed_at": "2026-12-01 10:00"}))
        if e2e_fails_once:
            w.answer(submit(d, "e2e_test", {**MPLS, "test_passed": "否", "e2e_test_report": "https://f/e2e-0.pdf"}))
            w.answer(submit(d, "local_test", {**MPLS, "local_test_report": "sftp://files/dlv/1/local-2.pdf"}))
            w.answer(submit(d, "local_completion", {"completed_at": "2026-12-02"}))
        w.answer(submit(d, "e2e_test", {**MPLS, "e2e_test_report": "https://files.example/dlv/1/e2e.xlsx"}))
        w.answer(submit(d, "e2e_completion", {"completed_at": "2026-12-03 18:00", "customer_confirmed": "是"}))
        return d
    return drive


SCENARIOS: dict[str, tuple[str, Callable[[], Driver]]] = {
    "tasks_p37_huawei": ("p37", _p37_huawei),
    "tasks_p37_zte_precheck_refused": ("p37", _p37_zte_precheck_refused),
    "tasks_p37_unknown_vendor": ("p37", _p37_unknown_vendor),
    "tasks_p38_join_bell": ("p38_join", _p38("p38_join", "bell")),
    "tasks_p38_adjust_fiberhome": ("p38_adjust", _p38("p38_adjust", "fiberhome")),
    "tasks_p38_leave_zte": ("p38_leave", _p38("p38_leave", "zte")),
    "tasks_p38_join_huawei_refused": ("p38_join", _p38("p38_join", "huawei", {("pon_nms_huawei", "onu_config")})),
    "tasks_p39_huawei_pass": ("p39", _p39("huawei", -18.5)),
    "tasks_p39_zte_low_power": ("p39", _p39("zte", -30.2)),
    "tasks_p40_replaced": ("p40", _p40()),
    "tasks_p40_activation_refused": ("p40", _p40({("cam", "onu_replace")})),
    "tasks_d3_1_class1_host": ("d3_1", _iot("d3_1", "open", "iot_class1_cross")),
    "tasks_d3_2_partner_members": ("d3_2", _iot("d3_2", "member_sync", "iot_class1_cross",
                                                members=[{"msisdn": "14800000011"}, {"msisdn": "14800000012"}])),
    "tasks_d3_3_class1_local": ("d3_3", _iot("d3_3", "open", "iot_class1_local")),
    "tasks_d3_3_gateway_not_synced": ("d3_3", _iot("d3_3", "open", "iot_class1_local",
                                                   {("iot_pboss", "ec_order"): {"gateway": "pending"}})),
    "tasks_d3_4_class23": ("d3_4", _iot("d3_4", "open", "iot_class23")),
    "tasks_d3_5_member_open": ("d3_5", _iot("d3_5", "open", "iot_member", iccid="8986000000000000001",
                                            member_products=["IOT-DATA-10G", "IOT-SMS"])),
    "tasks_d4_delivery": ("d4", _d4()),
    "tasks_d4_e2e_failed_once": ("d4", _d4(e2e_fails_once=True)),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Driver]:
    return {name: drive() for name, (_, drive) in SCENARIOS.items()}


def final_reply(d: Driver) -> dict[str, Any]:
    (reply,) = [c for c in d.steps[-1]["commands"] if c["type"] == "reply" and c["to"] == "origin"]
    return dict(reply)


# ---- P37 -------------------------------------------------------------------------------------------------
def test_p37_prechecks_then_cuts_over_forward_at_the_vendors_nms_and_reports_to_rc(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p37_huawei"]
    assert calls(d) == [("pon_nms_huawei", "precheck"), ("pon_nms_huawei", "cutover"), ("resource", "cutover_result")]
    (cut,) = payloads(d, "cutover")
    assert cut["srcFrameSlotPort"] == "0/1/1" and cut["dstFrameSlotPort"] == "0/2/1" and cut["direction"] == "forward"
    (res,) = payloads(d, "cutover_result")
    assert res["result"] == "success" and res["cutoverTaskId"] == "RC-CUT-1" and res["serviceType"] == "internet_line"
    assert d.status == "completed"


def test_p37_a_refused_precheck_is_no_cutover_and_rc_hears_why(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p37_zte_precheck_refused"]
    assert calls(d) == [("pon_nms_zte", "precheck"), ("resource", "cutover_result")]
    (pre,) = payloads(d, "precheck")
    assert pre["oldPonIndex"] == "1/1/1" and "srcFrameSlotPort" not in pre  # ZTE's own field names
    (res,) = payloads(d, "cutover_result")
    assert res["result"] == "fail" and res["reason"].startswith("割接前预校验失败（端口被占用）")
    assert d.status == "failed"


def test_p37_an_unknown_vendor_is_reported_not_guessed(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p37_unknown_vendor"]
    assert calls(d) == [("resource", "cutover_result")]
    assert payloads(d, "cutover_result")[0]["reason"] == "不支持的设备厂家: alcatel" and d.status == "failed"


# ---- P38 / P39 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "partner", "operation", "field", "action"), [
    ("tasks_p38_join_bell", "pon_nms_bell", "onu_config", "operation", "add"),
    ("tasks_p38_adjust_fiberhome", "pon_nms_fiberhome", "onu_config", "opType", "modify"),
    ("tasks_p38_leave_zte", "pon_nms_zte", "onu_revoke", "operate", "delete"),
])
def test_p38_configures_the_onu_with_the_vendors_own_call(runs: dict[str, Driver], name: str, partner: str,
                                                          operation: str, field: str, action: str) -> None:
    d = runs[name]
    assert calls(d) == [(partner, operation), ("wsp", "close_notify")]
    (sent,) = payloads(d, operation)
    assert sent[field] == action
    assert payloads(d, "close_notify")[0]["result"] == "success" and d.status == "completed"


def test_p38_a_refused_configuration_is_reported_failed_to_wsp(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p38_join_huawei_refused"]
    (note,) = payloads(d, "close_notify")
    assert note["result"] == "fail" and "ONU入网配置下发失败（端口被占用）" in note["reason"] and d.status == "failed"


def test_p39_reads_state_and_power_waits_for_the_test_then_revokes_and_reports(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p39_huawei_pass"]
    assert calls(d) == [("pon_nms_huawei", "onu_status"), ("pon_nms_huawei", "optical_power"),
                        ("pon_nms_huawei", "onu_revoke"), ("wsp", "close_notify")]
    (timer,) = [c for s in d.steps for c in of_type(s["commands"], "start_timer")]
    assert timer["at"] - d.steps[0]["at"] == 45 * 60  # extensions.test_minutes
    note = payloads(d, "close_notify")[0]
    assert note["result"] == "pass" and note["rxPowerDbm"] == -18.5 and d.status == "completed"


def test_p39_low_power_fails_the_test_but_still_revokes_the_onu(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p39_zte_low_power"]
    assert ("pon_nms_zte", "onu_revoke") in calls(d)
    note = payloads(d, "close_notify")[0]
    assert note["result"] == "fail" and note["reason"] == "光功率越限: -30.2 dBm" and d.status == "failed"


# ---- P40 ---------------------------------------------------------------------------------------------------
def test_p40_sends_rcs_replacement_data_to_cam_and_the_result_back_to_rc(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p40_replaced"]
    assert calls(d) == [("cam", "onu_replace"), ("resource", "onu_replace_result")]
    (sent,) = payloads(d, "onu_replace")
    assert (sent["oldOnuSn"], sent["newOnuSn"], sent["vendor"]) == ("FHTT0001", "FHTT0002", "fiberhome")
    assert payloads(d, "onu_replace_result")[0]["result"] == "success" and d.status == "completed"


def test_p40_a_failed_activation_is_synced_to_rc_as_failed(runs: dict[str, Driver]) -> None:
    d = runs["tasks_p40_activation_refused"]
    res = payloads(d, "onu_replace_result")[0]
    assert res["result"] == "fail" and res["reason"].startswith("ONU替换激活失败（激活失败）") and d.status == "failed"


# ---- D.3 IoT -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "expected"), [
    ("tasks_d3_1_class1_host", [("bboss", "ec_order_sync"), ("esop", "close_report")]),
    ("tasks_d3_2_partner_members", [("esop_members", "member_add"), ("bboss", "member_receipt")]),
    ("tasks_d3_3_class1_local", [("iot_pboss", "ec_order"), ("esop", "close_report")]),
    ("tasks_d3_4_class23", [("province_platform", "order_sync"), ("iot_ops_province", "order_sync"),
                            ("esop", "close_report")]),
    ("tasks_d3_5_member_open", [("iot_number_pool", "allocate_number"), ("iot_number_pool", "bind_sim"),
                                ("iot_number_pool", "set_status"), ("bboss", "member_open"),
                                ("bboss", "product_order"), ("esop", "close_report")]),
])
def test_d3_each_iot_case_goes_through_its_platforms_in_order(runs: dict[str, Driver], name: str,
                                                              expected: list[tuple[str, str]]) -> None:
    d = runs[name]
    assert calls(d) == expected and d.status == "completed"


def test_d3_1_host_province_order_names_the_partner_provinces(runs: dict[str, Driver]) -> None:
    (sent,) = payloads(runs["tasks_d3_1_class1_host"], "ec_order_sync")
    assert sent["scope"] == "cross_province" and sent["partnerProvinces"] == ["JS", "SH"]


def test_d3_3_a_platform_pboss_did_not_sync_holds_the_order_for_the_user(runs: dict[str, Driver]) -> None:
    d = runs["tasks_d3_3_gateway_not_synced"]
    assert calls(d) == [("iot_pboss", "ec_order")] and d.nodes() == ["failed_call"] and d.status == "running"


def test_d3_5_the_pools_number_and_sims_keys_reach_the_hlr_opening(runs: dict[str, Driver]) -> None:
    d = runs["tasks_d3_5_member_open"]
    (bind,) = payloads(d, "bind_sim")
    (hlr,) = payloads(d, "member_open")
    assert bind["msisdn"] == "14800000001" and bind["iccid"] == "8986000000000000001"
    assert (hlr["msisdn"], hlr["imsi"]) == ("14800000001", "460080000000001") and len(hlr["ki"]) == 32
    assert payloads(d, "product_order")[0]["products"] == ["IOT-DATA-10G", "IOT-SMS"]


# ---- D.4 ---------------------------------------------------------------------------------------------------
def test_d4_needs_the_line_types_indicators_and_both_reports(runs: dict[str, Driver]) -> None:
    d = runs["tasks_d4_delivery"]
    refused = [c for s in d.steps for c in of_type(s["commands"], "reply") if c.get("errors")]
    (first,) = refused
    assert {e["field"] for e in first["errors"]} == {"avg_rtd_ms", "packet_loss_pct", "local_test_report",
                                                     "test_passed"}
    assert calls(d) == [("resource", "resource_config"), ("ip_workbench", "activation"), ("esop", "close_report")]
    assert d.status == "completed" and d.state is not None
    done = [e["node"] for e in d.state["trail"]]
    assert done.index("local_test") < done.index("local_completion") < done.index("e2e_test") \
        < done.index("e2e_completion") < done.index("close_report")


def test_d4_a_failed_end_to_end_test_goes_back_to_the_local_test(runs: dict[str, Driver]) -> None:
    d = runs["tasks_d4_e2e_failed_once"]
    assert d.state is not None
    trail = [e["node"] for e in d.state["trail"]]
    assert trail.count("local_test") == 2 and trail.count("e2e_test") == 2 and d.status == "completed"


# ---- recordings --------------------------------------------------------------------------------------------
def replay(path: Path, edited: Blueprint | None = None) -> list[int]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    flow = next(k for k, f in FLOWS.items() if fixture_ref(f) == doc["blueprint"])
    bp = edited or blueprint(flow)
    state: dict[str, Any] | None = None
    diffs = []
    for i, s in enumerate(doc["steps"]):
        state, commands = step(bp, state, s["event"], s["at"])
        if commands != s["commands"]:
            diffs.append(i)
    return diffs


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recorded_task_orders_replay_to_identical_commands(name: str) -> None:
    path = REPLAYS / f"{name}.json"
    assert path.is_file(), f"missing {path}: re-record (see the module docstring)"
    assert json.loads(path.read_text(encoding="utf-8"))["blueprint"] == fixture_ref(FLOWS[SCENARIOS[name][0]])
    assert replay(path) == []


def test_every_blueprint_here_has_its_own_recording() -> None:
    assert {flow for flow, _ in SCENARIOS.values()} == set(FLOWS)


def test_a_vendor_payload_edit_fails_the_replay() -> None:
    bp = blueprint("p37")
    node = bp.nodes["cutover_huawei"]
    steps = list(node.steps)  # type: ignore[attr-defined]  # a call node
    steps[1] = steps[1].model_copy(update={"payload": {**steps[1].payload, "direction": "'reverse'"}})
    edited = bp.model_copy(update={"nodes": {**bp.nodes, "cutover_huawei": node.model_copy(update={"steps": steps})}})
    assert replay(REPLAYS / "tasks_p37_huawei.json", edited) != []


def _record_all(folder: Path = REPLAYS) -> None:
    for name, (flow, drive) in SCENARIOS.items():
        record(folder / f"{name}.json", fixture_ref(FLOWS[flow]), drive())


if __name__ == "__main__":
    _record_all()
