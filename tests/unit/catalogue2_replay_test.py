"""Catalogue II (issue 12): one recorded order per blueprint, replayed through today's engine.

Each recording (tests/fixtures/flows/replay/c2_<script>.json) holds the events, the commands they gave
and its expectations: the partner calls in order, the reports (A.6 codes or G6 stage/descOutline) per
partner, the final status. A blueprint edit that would change what a recorded order does fails here;
the expectation lists say in plain words what each row's order does. Re-record a meant change with
``.venv/bin/python -m tests.unit.catalogue2_replay_test`` (then read the diff of the expect blocks).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flows.graph import step
from hub.products import load_products, sample_order
from tests.unit.catalogue2_play_test import (
    CONFIG,
    REPLAYS,
    Player,
    Script,
    blueprint,
    calls_made,
    library,
    order,
    record,
    reports_sent,
)

#: the products of catalogue II (issue 12); every blueprint of these has a recording
PRODUCTS = {
    "srv6_vpn",
    "sdwan_cross_border",
    "cross_province_transmission",
    "international_transmission",
    "cross_province_mpls",
    "cross_province_internet",
    "cross_province_express",
    "smart_network_line",
    "smart_network_cloud_port",
    "edge_cloud_line",
    "hq_cloud_line",
    "hq_cloud_network",
    "5g_lan",
    "5g_slice_general",
    "5g_slice_reused",
    "5g_slice_mtn",
    "5g_dnn_sink",
    "dual_domain_cross_province",
    "dual_domain_multi_dnn",
    "dual_domain_dedicated",
}

T1, T2 = {"next_team": "城区装维班组"}, {"next_team": "传输网络班组"}
SURVEY8 = {"network_build_days": 20, "degrade_reason_l1": "无", "building_scene": "写字楼"}
SURVEY11 = {
    "total_days": 30,
    "network_build_days": 20,
    "cable_resources": "充足",
    "cable_length_km": 1.5,
    "need_equipment": "否",
    "equipment_days": 0,
    "need_property": "否",
    "property_cost_wan": 0.0,
    "degrade_reason_l1": "无",
    "building_scene": "园区",
}
#: 资管's scheme says the resources are there: no construction (the P14 path: tests/unit/catalogue2_p14_test.py)
RESOURCES = {"resource.design_request": {"needs_construction": False}}
NE_TEAMS = {"allocation_team": "资源分配班组", "hq_ne_team": "总部网元数据班组", "province_ne_team": "省内网元数据班组"}


def _scripts(*scripts: Script) -> dict[str, Script]:
    return {s.name: s for s in scripts}


SCRIPTS: dict[str, Script] = _scripts(
    # ---- P06 SRV6 VPN ---------------------------------------------------------------------------
    Script(
        "p06_1_survey_pon_4_rows",
        "p06-1-srv6-survey",
        order("srv6_vpn", "survey", srv6_access="PON"),
        {
            "remote_survey": [
                {"survey_rows": ["r1", "r2", "r3"], **T1},  # PON: 2 or 4 rows (refused)
                {"survey_rows": ["r1", "r2", "r3", "r4"], **T1},
            ]
        },
    ),
    Script(
        "p06_3_change_survey_spn_2_rows",
        "p06-3-srv6-change-survey",
        order("srv6_vpn", "change_survey", srv6_access="SPN优享"),
        {
            "remote_survey": [
                {"survey_rows": ["r1", "r2", "r3", "r4"], **T1},  # SPN: exactly 2 (refused)
                {"survey_rows": ["r1", "r2"], **T1},
            ]
        },
    ),
    Script(
        "p06_2_open_ptn",
        "p06-2-srv6-open",
        order("srv6_vpn", "open", srv6_access="PTN双规"),
        {"design_confirm": [{"redo_design": "是"}, {}]},
    ),
    Script(
        "p06_4_speed_up_replace_pon",
        "p06-4-srv6-change",
        order("srv6_vpn", "change", srv6_access="PON", pe_ce_access="1"),
        {
            "accept": [{"change_type": "提速", **T1}],
            "design": [
                {"replace_device": "是", "dual_homing": None, **T2},  # 是否双规 missing (PE-CE 1)
                {"replace_device": "是", "dual_homing": "是", "design_review_needed": "是", **T2},
            ],
        },
    ),
    Script(
        "p06_4_speed_down_spn_no_replace",
        "p06-4-srv6-change",
        order("srv6_vpn", "change", srv6_access="SPN单规", pe_ce_access="2"),
        {
            "accept": [{"change_type": "降速", **T1}],
            "design": [{"replace_device": "是", **T2}, {**T2}],
        },  # 降速 locks 更换设备 to 否
        reject_calls=["cam.spn_activate"],
    ),  # → 资源重查, activation again
    Script(
        "p06_4_fiber_direct_offline",
        "p06-4-srv6-change",
        order("srv6_vpn", "change", srv6_access="光纤直驱", pe_ce_access="7"),
        {"accept": [{"change_type": "提速", "need_design": "否", **T1}]},
    ),
    Script("p06_5_move_otn", "p06-5-srv6-move", order("srv6_vpn", "move", srv6_access="OTN")),
    Script(
        "p06_6_suspend_pon",
        "p06-6-srv6-suspend",
        order("srv6_vpn", "suspend", srv6_access="PON"),
        reject_reports=["group.1"],
    ),  # G2: a refused report, retried
    Script("p06_7_resume_pon", "p06-7-srv6-resume", order("srv6_vpn", "resume", srv6_access="PON")),
    Script(
        "p06_8_terminate_from_ce_trans_type",
        "p06-8-srv6-terminate",
        order("srv6_vpn", "terminate", ceTransType="PTN单规"),
    ),
    # ---- P25 5G LAN (A.6 A001/A003/A004, E001…E004) -----------------------------------------------
    Script(
        "p25_1_survey_assigned_address",
        "p25-1-5g-lan-survey",
        order("5g_lan", "survey", if_assign_inter_ip=True, user_main_inter_ip=["10.0.0.1", "10.0.0.2"]),
        {
            "core_survey": [
                {"survey_result": "可建设", "ne_name": None, "confirmed_ip": None},  # both missing
                {"survey_result": "可建设", "ne_name": "UPF-HZ-1", "confirmed_ip": "10.0.0.1,10.0.0.2"},
                {"survey_result": "可建设", "ne_name": "UPF-HZ-1", "confirmed_ip": "10.0.0.1,10.0.0.2"},
            ],
            "survey_audit": [{"audit_result": "驳回"}, {"audit_result": "通过"}],
        },
    ),
    Script(
        "p25_3_change",
        "p25-3-5g-lan-change",
        order("5g_lan", "change"),
        {"core_design": [{"upf_list": ["UPF-HZ-1"], "smf_list": ["SMF-1"], "udm_list": ["UDM-1"]}]},
    ),
    Script(
        "p25_4_remove_e002_refused_once",
        "p25-4-5g-lan-remove",
        order("5g_lan", "remove"),
        reject_reports=["esop.E002processing"],
    ),
    Script(
        "p25_5_jgj_ne_data",
        "p25-5-5g-lan-jgj-ne-data",
        order("5g_lan", "ne_data", smf="SMF-1", udm="UDM-1", upf="UPF-1", dnn="hz.lan"),
        results={"jgj.ne_data": {"smfName": "SMF-1", "dnnName": "hz.lan", "upfName": "UPF-1"}},
    ),
    # ---- P30–P32 dual-domain (A.6 B601/B602/B608, D601/D602/D607/D608, E601/E602/E605/E606) ----------
    Script(
        "p30_1_open",
        "p30-1-dual-domain-open",
        order("dual_domain_cross_province", "open"),
        {
            "network_change": [
                {"construction": "是", "construction_team": None},  # 是 requires its team
                {"construction": "是", "construction_team": "施工一队"},
            ]
        },
    ),
    Script(
        "p30_1_withdraw_at_network_change",
        "p30-1-dual-domain-open",
        order("dual_domain_cross_province", "open"),
        {"network_change": [{"decision": "退单"}]},
    ),
    Script(
        "p30_2_change_type_1",
        "p30-2-dual-domain-change",
        order("dual_domain_cross_province", "change", changetype=1),
        {
            "accept": [{"verify_team": "验证班组"}, {"verify_team": None}],  # changetype 1: no verification team
            "network_change": [
                {
                    "construction": "是",
                    "allocation_team": None,
                    "hq_ne_team": None,
                    "province_ne_team": None,
                },  # {1,3,4,7}: locked to 否
                {"allocation_team": None, "hq_ne_team": None, "province_ne_team": None},
            ],
        },
    ),
    Script(
        "p30_2_change_type_3",
        "p30-2-dual-domain-change",
        order("dual_domain_cross_province", "change", changetype=3),
        {"accept": [{"verify_team": None}, {"verify_team": "验证班组"}], "network_change": [NE_TEAMS]},
        reject_calls=["group.network_config_notify"],
    ),
    Script(
        "p30_3_remove_failed",
        "p30-3-dual-domain-remove",
        order("dual_domain_cross_province", "remove"),
        {
            "close_result": [
                {"close_result": "拆除失败", "close_note": None},
                {"close_result": "拆除失败", "close_note": "设备未回收"},
            ]
        },
    ),
    Script(
        "p30_4_jgj_ne_data",
        "p30-4-dual-domain-jgj-ne-data",
        order("dual_domain_cross_province", "ne_data", smf="SMF-1", udm="UDM-1", pcf="PCF-1", dnn="zj.dual"),
    ),
    Script("p31_1_open", "p31-1-multi-dnn-open", order("dual_domain_multi_dnn", "open")),
    Script(
        "p31_2_change_type_4",
        "p31-2-multi-dnn-change",
        order("dual_domain_multi_dnn", "change", changetype=4),
        {"network_change": [NE_TEAMS]},
    ),
    Script("p31_3_remove", "p31-3-multi-dnn-remove", order("dual_domain_multi_dnn", "remove")),
    Script(
        "p32_1_open_dnn_name_checked",
        "p32-1-dedicated-dnn-open",
        order("dual_domain_dedicated", "open", city_abbr="HZ", enterprise_abbr="ACME"),
        {
            "accept": [{"dnn_name": "HZ5GSYZWACMX.ZJ"}, {"dnn_name": "HZ5GSYZWACME.ZJ"}],
            "network_change": [
                {"construction": "是", "construction_team": "施工一队", "install": "是", "install_team": "装维一队"}
            ],
        },
    ),
    Script(
        "p32_2_change",
        "p32-2-dedicated-dnn-change",
        order("dual_domain_dedicated", "change", dnn_name="NB5GSYZWXYZ.ZJ"),
        {"accept": [{"change_kind": 3}], "core_allocation_result": [{"reconfigure": "是"}, {}]},
    ),
    Script(
        "p32_3_remove",
        "p32-3-dedicated-dnn-remove",
        order("dual_domain_dedicated", "remove", dnn_name="NB5GSYZWXYZ.ZJ"),
        results={"cm2_platform.cm2_release": {"vpnName": "VPN-1", "pushType": "删除", "pushResult": "成功"}},
    ),
    # ---- P07 SD-WAN cross-border live ------------------------------------------------------------
    Script(
        "p07_1_open",
        "p07-1-sdwan-cross-border-open",
        order("sdwan_cross_border", "open"),
        {
            "network_change": [
                {"start_activation": "是", "activation_dept": None},  # 是 requires the department
                {"start_activation": "是", "activation_dept": "网络部", "start_install": "是"},
            ]
        },
    ),
    Script(
        "p07_2_suspend_no_activation",
        "p07-2-sdwan-cross-border-suspend",
        order("sdwan_cross_border", "suspend"),
        {"network_change": [{"start_activation": "否", "start_install": "否"}]},
    ),
    Script("p07_3_resume", "p07-3-sdwan-cross-border-resume", order("sdwan_cross_border", "resume")),
    Script(
        "p07_4_change_review_rejected",
        "p07-4-sdwan-cross-border-change",
        order("sdwan_cross_border", "change"),
        {"design_review": [{"review_result": "驳回"}, {"review_result": "通过"}]},
    ),
    Script("p07_5_remove", "p07-5-sdwan-cross-border-remove", order("sdwan_cross_border", "remove")),
    # ---- P08–P12 cross-province / international lines --------------------------------------------
    Script(
        "p08_1_suspend_a_end",
        "p08-1-cross-province-transmission-suspend",
        order("cross_province_transmission", "suspend", is_a_end_city=True, dispatch_attachment="att-1"),
    ),
    Script(
        "p08_2_resume_not_a_end",
        "p08-2-cross-province-transmission-resume",
        order("cross_province_transmission", "resume", is_a_end_city=False),
    ),
    Script(
        "p08_3_survey",
        "p08-3-cross-province-transmission-survey",
        order("cross_province_transmission", "survey", need_topology="是"),
        {"survey": [SURVEY8]},
    ),
    Script(
        "p08_4_change_survey",
        "p08-4-cross-province-transmission-change-survey",
        order("cross_province_transmission", "change_survey"),
        {"survey": [SURVEY8]},
    ),
    Script(
        "p08_5_open_audit_loop",
        "p08-5-cross-province-transmission-open",
        order("cross_province_transmission", "open"),
        {
            "verification": [
                {"test_standard": "RFC2544", "test_ok": False},
                {"test_standard": "RFC2544", "test_ok": True},
            ]
        },
        RESOURCES,
    ),
    Script("p08_6_change", "p08-6-cross-province-transmission-change", order("cross_province_transmission", "change")),
    Script(
        "p09_1_survey",
        "p09-1-international-transmission-survey",
        order("international_transmission", "survey"),
        {"survey": [{**SURVEY8, "opened_in_building": "是"}]},
    ),
    Script(
        "p09_2_change_survey",
        "p09-2-international-transmission-change-survey",
        order("international_transmission", "change_survey"),
    ),
    Script(
        "p09_3_open",
        "p09-3-international-transmission-open",
        order("international_transmission", "open"),
        {
            "verification": [
                {
                    "domestic_operator_address": "上海浦东1号",
                    "building_type": "写字楼",
                    "building_owner": "业主",
                    "cabinet_owner": "运营商",
                    "test_ok": True,
                }
            ]
        },
        RESOURCES,
    ),
    Script("p09_4_change", "p09-4-international-transmission-change", order("international_transmission", "change")),
    Script("p10_1_survey_four_stages", "p10-1-cross-province-mpls-survey", order("cross_province_mpls", "survey")),
    Script(
        "p10_2_change_survey_many_lines",
        "p10-2-cross-province-mpls-change-survey",
        order("cross_province_mpls", "change_survey"),
        {st: [{"lines": ["L1", "L2", "L3"]}] for st in ("design", "remote_survey", "site_survey", "survey_summary")},
    ),
    Script("p10_3_open", "p10-3-cross-province-mpls-open", order("cross_province_mpls", "open"), {}, RESOURCES),
    Script("p10_4_change", "p10-4-cross-province-mpls-change", order("cross_province_mpls", "change")),
    Script(
        "p11_1_credit_suspend_redispatch",
        "p11-1-cross-province-internet-credit-suspend",
        order(
            "cross_province_internet",
            "credit_suspend",
            dispatch_kind="重派",
            suspend_scene="欠费",
            suspend_reason="信控",
        ),
    ),
    Script(
        "p11_2_credit_resume",
        "p11-2-cross-province-internet-credit-resume",
        order(
            "cross_province_internet", "credit_resume", dispatch_kind="派发", resume_type="缴费", resume_reason="已缴费"
        ),
    ),
    Script(
        "p11_3_credit_cancel",
        "p11-3-cross-province-internet-credit-cancel",
        order("cross_province_internet", "credit_cancel", cancel_reason="长期欠费"),
    ),
    Script(
        "p11_4_survey",
        "p11-4-cross-province-internet-survey",
        order("cross_province_internet", "survey"),
        {"survey": [SURVEY11]},
    ),
    Script(
        "p11_5_change_survey",
        "p11-5-cross-province-internet-change-survey",
        order("cross_province_internet", "change_survey"),
    ),
    Script("p11_6_open", "p11-6-cross-province-internet-open", order("cross_province_internet", "open")),
    Script("p11_7_move", "p11-7-cross-province-internet-move", order("cross_province_internet", "move")),
    Script(
        "p12_1_credit_suspend",
        "p12-1-cross-province-express-credit-suspend",
        order("cross_province_express", "credit_suspend", dispatch_kind="派发"),
    ),
    Script(
        "p12_2_credit_resume",
        "p12-2-cross-province-express-credit-resume",
        order("cross_province_express", "credit_resume"),
    ),
    Script(
        "p12_3_credit_cancel",
        "p12-3-cross-province-express-credit-cancel",
        order("cross_province_express", "credit_cancel"),
    ),
    Script("p12_4_survey", "p12-4-cross-province-express-survey", order("cross_province_express", "survey")),
    Script(
        "p12_5_change_survey",
        "p12-5-cross-province-express-change-survey",
        order("cross_province_express", "change_survey"),
    ),
    # ---- P16–P18 HQ cloud ----------------------------------------------------------------------
    Script(
        "p16_1_net_side",
        "p16-1-smart-network-line-cloud-network-merge",
        order("smart_network_line", "cloud_network_merge"),
    ),
    Script(
        "p16_2_cloud_side",
        "p16-2-smart-network-cloud-port-cloud-network-merge",
        order("smart_network_cloud_port", "cloud_network_merge"),
    ),
    Script(
        "p16_3_both_sides",
        "p16-3-edge-cloud-line-cloud-network-merge",
        order("edge_cloud_line", "cloud_network_merge"),
        results={
            "group.resource_preoccupy": {"nePeId": "PE-1", "cloudPeId": "CPE-1"},
            "group.cloud_config": {"serviceNodeId": "N-1", "addressFamily": "ipv4", "rd": "65000:1", "rt": "65000:2"},
        },
    ),
    Script(
        "p17_1_open",
        "p17-1-hq-cloud-line-open",
        order("hq_cloud_line", "open"),
        results={"eoms.order_sync": {"code": "0", "completion": "竣工"}},
    ),
    Script(
        "p17_2_elastic_scale",
        "p17-2-hq-cloud-line-elastic-scale",
        order("hq_cloud_line", "elastic_scale", elastic_flag="缩容"),
        results={"eoms.elastic_scale": {"code": "0", "scaleResult": "缩容成功"}},
    ),
    Script(
        "p18_1_open_pon_with_construction",
        "p18-1-hq-cloud-network-open",
        order("hq_cloud_network", "open"),
        {
            "network_change": [
                {"construction": "是", "construction_dept": "工程部", "install": "是", "install_dept": "装维部"}
            ]
        },
    ),
    Script(
        "p18_1_open_spn",
        "p18-1-hq-cloud-network-open",
        order("hq_cloud_network", "open"),
        results={"resource.cloud_config_query": {"access_type": "SPN"}},
    ),
    Script("p18_2_elastic_scale", "p18-2-hq-cloud-network-elastic-scale", order("hq_cloud_network", "elastic_scale")),
    # ---- P26–P29 5G private-network slices ---------------------------------------------------
    Script("p26_1_open_gre_auto", "p26-1-5g-slice-general-open", order("5g_slice_general", "open", networking="GRE")),
    Script(
        "p26_1_open_direct_withdrawn",
        "p26-1-5g-slice-general-open",
        order("5g_slice_general", "open", networking="直连"),
        {
            "hq_ne_data": [
                {"action": "申请退单", "withdraw_reason": "客户取消"},
                {"action": "申请退单", "withdraw_reason": "客户取消"},
            ],
            "withdraw_approval": [{"approval": "解除退单"}, {"approval": "同意"}],
        },
        results={
            "resource.resource_allocation": {
                "upfSubInterface": "GE1/0/1.100",
                "vlanId": 100,
                "dcgw1BgpPeerIpv4": "10.9.9.1",
                "upfLoopback": "10.8.8.8",
            }
        },
    ),
    Script(
        "p26_2_change_manual",
        "p26-2-5g-slice-general-change",
        order("5g_slice_general", "change", networking="公网NAT"),
    ),
    Script(
        "p26_3_remove",
        "p26-3-5g-slice-general-remove",
        order("5g_slice_general", "remove"),
        {"removal_summary": [{"summary_result": "驳回"}, {"summary_result": "通过"}]},
    ),
    Script("p26_4_order_return_approved", "p26-4-5g-slice-order-return", order("5g_slice_general", "order_return")),
    Script(
        "p26_4_order_return_released",
        "p26-4-5g-slice-order-return",
        order("5g_slice_general", "order_return"),
        {"return_approval": [{"approval": "解除退单"}]},
    ),
    Script("p26_5_survey_premium_auto", "p26-5-5g-slice-survey", order("5g_slice_general", "survey", package="优享")),
    Script(
        "p27_1_open_nat_a3",
        "p27-1-5g-slice-reused-open",
        order("5g_slice_reused", "open", networking="公网NAT", value_added="A3"),
    ),
    Script("p27_2_change", "p27-2-5g-slice-reused-change", order("5g_slice_reused", "change")),
    Script("p27_3_remove", "p27-3-5g-slice-reused-remove", order("5g_slice_reused", "remove")),
    Script("p28_1_open", "p28-1-5g-slice-mtn-open", order("5g_slice_mtn", "open")),
    Script("p29_1_open", "p29-1-5g-dnn-sink-open", order("5g_dnn_sink", "open")),
    Script("p29_2_change", "p29-2-5g-dnn-sink-change", order("5g_dnn_sink", "change")),
    Script("p29_3_remove", "p29-3-5g-dnn-sink-remove", order("5g_dnn_sink", "remove")),
)

#: shipped before issue 12, with their own recordings (tests/unit/flows_shipped_test.py)
SHIPPED = {"p25-2-5g-lan-open"}


def _path(name: str) -> Any:
    return REPLAYS / f"c2_{name}.json"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_recorded_order_replays_to_identical_commands(name: str) -> None:
    path = _path(name)
    assert path.is_file(), f"missing {path}: re-record (see the module docstring)"
    doc = json.loads(path.read_text(encoding="utf-8"))
    bp = blueprint(doc["blueprint"])
    state: dict[str, Any] | None = None
    for i, s in enumerate(doc["steps"]):
        state, commands = step(bp, state, s["event"], s["at"])
        assert commands == s["commands"], f"{name}: step {i} ({s['event']['type']}) differs"
    assert state is not None and state["status"] == doc["expect"]["status"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_expectations_of_a_recording_are_what_its_steps_do(name: str) -> None:
    """The plain-words expect block (calls in order, reports, end) is read from the recorded commands,
    so an edited expectation that the order does not do fails here."""
    doc = json.loads(_path(name).read_text(encoding="utf-8"))
    assert {
        "calls": calls_made(doc["steps"]),
        "reports": reports_sent(doc["steps"]),
        "status": doc["expect"]["status"],
    } == doc["expect"]
    assert doc["blueprint"] == SCRIPTS[name].blueprint


def test_every_catalogue2_blueprint_has_a_recording() -> None:
    ours = {bp.name for bp in library() if bp.product in PRODUCTS} - SHIPPED
    recorded = {s.blueprint for s in SCRIPTS.values()}
    assert ours - recorded == set(), "blueprints without a recorded order"
    assert {bp.product for bp in library() if bp.name in recorded} == PRODUCTS


def _record_all() -> None:
    for name, script in SCRIPTS.items():
        record(_path(name), script)


__all__ = ["Script", "order"]

if __name__ == "__main__":
    _record_all()


@pytest.mark.parametrize("name", sorted(bp.name for bp in library() if bp.product in PRODUCTS))
def test_the_demo_sample_order_completes_with_the_field_apps_samples(name: str) -> None:
    """``hub demo --all`` posts the product file's sample order (hub/products.py sample_order) and its field
    app submits samples: each catalogue II blueprint must complete on them (an expression reading a field
    the sample lacks, e.g. bandwidth_mbps, dead-lettered the demo's P18.2 order)."""
    bp = blueprint(name)
    spec = load_products(CONFIG).get(str(bp.product))
    base = {"customer": {"name": "示例客户"}, "addresses": [{"city": "杭州", "detail": "示例路1号"}]}
    data = sample_order(spec, str(bp.product), str(bp.scenario), "DEMO-1", base)
    assert Player(Script(name, name, data)).run().status == "completed"
