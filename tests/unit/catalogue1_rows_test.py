"""What the catalogue rows of engineer B's blueprints ask, checked by hand (CATALOGUE P01–P05, P13–P15,
P19–P24, P33–P35): the 驳回 and G9 loops, ordered activation sub-steps, the G3 retry, the branches on typed
order fields, transparency reports, compensation on cancel, fusion waits, and the file headers. Pure: the
engine with an injected clock (tests/unit/catalogue1_world.py), no servers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hub.order import WorkOrder
from hub.products import check_order
from hub.settings import PROJECT_ROOT
from tests.unit.catalogue1_scripts import BLUEPRINT_FILES, SCRIPTS
from tests.unit.catalogue1_world import Script, _products, blueprint, drive, order, summary
from tests.unit.flows_graph_harness import Driver


def _calls(d: Driver, kind: str = "send_call") -> list[dict[str, Any]]:
    return [c for s in d.steps for c in s["commands"] if c["type"] == kind]


@pytest.mark.parametrize("name", sorted(n for n, (rel, _) in SCRIPTS.items() if "p14_construction" not in rel))
def test_every_recorded_order_is_one_the_intake_accepts(name: str) -> None:
    """The recordings run on orders the intake would take: the canonical model and the product's typed fields."""
    _, script = SCRIPTS[name]
    WorkOrder.model_validate(script.order)
    spec = _products()[script.order["product"]]
    check_order(spec, script.order["scenario"], script.order)


@pytest.mark.parametrize("rel", BLUEPRINT_FILES)
def test_header_names_the_row_section_and_source(rel: str) -> None:
    text = (PROJECT_ROOT / rel).read_text(encoding="utf-8")
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert f"CATALOGUE {doc['catalogue']}" in text.split("\nname:")[0], "the file header names the catalogue ID"
    assert doc["section"].startswith("§") and doc["source"] in ("specified", "inferred")
    assert len(doc["source_note"]) > 30  # what is inferred, and why
    if doc["source"] == "inferred":
        assert "nferred" in text.split("\nname:")[0], "an inferred blueprint says so in its header"


def test_p13_rejected_order_ends_with_the_final_reply_to_esop_and_no_dispatch() -> None:
    rel, script = SCRIPTS["line_extension__open_rejected"]
    d = drive(blueprint(rel), script)
    (reply,) = _calls(d)
    assert (reply["partner"], reply["operation"], reply["payload"]["resultCode"]) == ("esop", "close_report", "0")
    assert d.status == "cancelled"


def test_p13_dispatch_not_successful_waits_with_the_g3_text_and_is_sent_again() -> None:
    bp = blueprint("config/flows/line_extension/open.yaml")
    refused = Script(order("line_extension", "open", "E-ZQ-1"), results={"zq.install_dispatch": {"result": "fail"}})
    d = drive(bp, refused, max_steps=3)
    assert d.nodes() == ["failed_call"]
    text = d.state["data"]["_calls"][-1]["text"]  # type: ignore[index]
    assert text.startswith("业务转派失败（") and text.endswith("请解决问题后重新点击业务转派按钮")
    again = d.send({"type": "submission", "node": "failed_call", "fields": {}, "user": {"id": "u"}})
    assert [(c["partner"], c["operation"]) for c in again if c["type"] == "send_call"] == [("zq", "install_dispatch")]


def test_p04_1_failed_verification_goes_back_through_the_audit_g9() -> None:
    path = summary(drive(*_script("transmission_line__open_audit_loop")))["path"]
    assert path[path.index("verification"):path.index("archive")] == [
        "verification", "result_audit", "verification", "result_audit"]


def test_p04_1_rejected_network_change_goes_back_to_acceptance_g10() -> None:
    path = summary(drive(*_script("transmission_line__open_rejected_change")))["path"]
    assert path[path.index("network_change") + 1] == "accept"


def _script(name: str) -> tuple[Any, Script]:
    rel, script = SCRIPTS[name]
    return blueprint(rel), script


def test_p05_gpon_then_sr_each_after_the_previous_result_then_office_data() -> None:
    d = drive(*_script("mpls_vpn__open"))
    ops = [(c["partner"], c["operation"], c["purpose"]) for c in _calls(d)]
    gpon, sr = ops.index(("cam", "gpon_activate", "call")), ops.index(("cam", "sr_activate", "call"))
    assert gpon < sr < ops.index(("ldp", "office_data", "call"))
    assert ("cam", "result_query", "poll") in ops[gpon:sr], "SR goes out only after GPON's result query"
    assert summary(drive(*_script("mpls_vpn__open_no_construction")))["subflows"] == []  # 工程施工=否
    assert summary(d)["subflows"] == ["p14-construction"]


def test_p23_1_every_stage_reported_to_yth_and_cancel_releases_the_camera_account() -> None:
    bp, script = _script("industry_video__open")
    d = drive(bp, script)
    reported = [c["payload"]["stage"] for c in _calls(d, "send_report") if c["partner"] == "yth"]
    titled = [n.title for k, n in bp.nodes.items() if n.kind in ("call", "user", "auto") and k != "failed_call"]
    assert reported == titled  # 上报接口 on entering each stage (§3.1.3.1.1.13)
    d2 = Driver(bp)
    d2.send({"type": "order_received", "order_id": "O1", "data": script.order})  # camera_open is sync
    first = next(c for c in d2.steps[0]["commands"] if c["type"] == "send_call")
    d2.send({"type": "call_result", "call_id": first["call_id"], "ok": True, "result": {"code": "0"}, "via": "sync"})
    undo = [c for c in d2.send({"type": "cancel", "reason": "撤单"}) if c["type"] == "send_call"]
    assert [(c["partner"], c["operation"], c["purpose"]) for c in undo] == [("vgw", "camera_release", "compensate")]


def test_p35_7_onsite_removal_decides_the_removal_order() -> None:
    with_removal = summary(drive(*_script("video_micro__unsubscribe_onsite_removal")))["calls"]
    without = summary(drive(*_script("video_micro__unsubscribe")))["calls"]
    assert with_removal[0] == "fieldapp.todo" and "fieldapp.todo" not in without
    assert with_removal[1:] == without


def test_p01_1_the_3a_account_fills_the_page_and_a_refused_3a_call_is_clicked_again() -> None:
    d = drive(*_script("dynamic_ip_line__open"))
    assert d.state["data"]["aaa_account"]["account"] == "dyn-0001@zj"  # type: ignore[index]
    calls = summary(drive(*_script("dynamic_ip_line__open_3a_refused_then_retried")))["calls"]
    assert calls.count("aaa.account_open") == 2


def test_p22_cloud_pc_ends_after_the_syncs_with_no_close_report() -> None:
    s = summary(drive(*_script("cloud_pc__install")))
    assert s["calls"][-2:] == ["resource.info_sync", "yth.cloud_pc_sync"] and s["status"] == "completed"
    assert not any(c.startswith("esop.") for c in s["calls"])


def test_p33_fusion_member_waits_for_its_group_before_going_to_wsp() -> None:
    bp, script = _script("broadband_pbx__open_fusion")
    d = Driver(bp)
    d.send({"type": "order_received", "order_id": "O1", "data": script.order})
    d.send({"type": "submission", "node": "design", "fields": {"scheme": "s"}, "user": {"id": "u"}})
    assert d.nodes() == ["fusion_wait"] and not _calls(d)  # nothing goes to WSP before the group is in
    s = summary(drive(bp, script))
    assert s["published"] == ["FK-1"] and s["calls"][0] == "wsp.fusion_dispatch"


def test_a_refused_synchronous_rest_call_shows_the_partners_reason_g3() -> None:
    """A REST answer reaches the blueprint as {http_status, body}; the G3 text still carries the reason."""
    d = drive(*_script("security_package__open_compute_refused_then_retried"))
    (failed,) = [c for c in d.state["data"]["_calls"] if not c["ok"]]  # type: ignore[index]
    assert failed["text"] == "算力资源开通失败（模拟失败），请解决问题后重新点击算力资源开通按钮"
    assert d.status == "completed" and d.state["data"]["compute_vpc"] == "vpc-1"  # type: ignore[index]


def test_p14_a_cancelled_construction_order_is_withdrawn_at_the_platform() -> None:
    """撤单 (§1.3): cancelling the sub-flow while CP works on it sends construction_cancel for that call."""
    bp, script = _script("p14_construction__dispatch")
    d = Driver(bp)
    d.send({"type": "order_received", "order_id": "O1:9:child", "data": script.order})
    push = next(c for c in d.steps[0]["commands"] if c["type"] == "send_call")
    cancel = [c for c in d.send({"type": "cancel", "reason": "撤单"}) if c["type"] == "send_call"]
    assert [(c["partner"], c["operation"], c["payload"]) for c in cancel] == [
        ("construction", "construction_cancel", {"call_id": push["call_id"]})]


@pytest.mark.parametrize("rel", BLUEPRINT_FILES)
def test_esop_notify_order_result_carries_only_the_wsdl_fields(rel: str) -> None:
    """ESOP's notifyOrderResult (12.2.3) has five elements; an extra key is a SOAP client error at delivery
    (found by `hub demo --all`: 'unexpected keyword argument newAddress'), so extras go into resultDesc."""
    bp = blueprint(rel)
    for name, node in bp.nodes.items():
        for s in getattr(node, "steps", []):
            if (s.partner, s.operation) == ("esop", "close_report"):
                assert set(s.payload) == {"orderId", "hubOrderId", "resultCode", "resultDesc", "finishTime"}, name
