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
from tests.unit.catalogue2_play_test import REPLAYS, Player, Script, blueprint, expectations, library, order, record

#: the products of catalogue II (issue 12); every blueprint of these has a recording
PRODUCTS = {"srv6_vpn", "5g_lan", "dual_domain_cross_province", "dual_domain_multi_dnn", "dual_domain_dedicated"}

T1, T2 = {"next_team": "城区装维班组"}, {"next_team": "传输网络班组"}
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
        order("5g_lan", "survey", ifAssignInterIpAdd="1", userMainInterIpAdd=["10.0.0.1", "10.0.0.2"]),
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
        {"smf_list": ["SMF-1"], "udm_list": ["UDM-1"], "upf_list": ["UPF-1"], "dnn": "hz.lan"},
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
        {"close_result": [{"close_result": "拆除失败"}, {"close_result": "拆除失败", "close_note": "设备未回收"}]},
    ),
    Script(
        "p30_4_jgj_ne_data",
        "p30-4-dual-domain-jgj-ne-data",
        {"smf": "SMF-1", "udm": "UDM-1", "pcf": "PCF-1", "dnn": "zj.dual"},
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
)

#: shipped before issue 12, with their own recordings (tests/unit/flows_shipped_test.py)
SHIPPED = {"p25-2-5g-lan-open"}
#: catalogue II sub-flows (no product): the 大区 NE data deliveries to 集团局管
SUBFLOWS = {"p25-5-5g-lan-jgj-ne-data", "p30-4-dual-domain-jgj-ne-data"}


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
def test_playing_the_script_again_meets_its_recorded_expectations(name: str) -> None:
    """The script played now (partners and people answering) gives the calls, reports and end the
    recording promises — so a recording cannot drift from its script."""
    doc = json.loads(_path(name).read_text(encoding="utf-8"))
    assert expectations(Player(SCRIPTS[name]).run()) == doc["expect"]


def test_every_catalogue2_blueprint_has_a_recording() -> None:
    ours = {bp.name for bp in library() if bp.product in PRODUCTS or bp.name in SUBFLOWS} - SHIPPED
    recorded = {s.blueprint for s in SCRIPTS.values()}
    assert ours - recorded == set(), "blueprints without a recorded order"
    assert {bp.product for bp in library() if bp.name in recorded} - {None} == PRODUCTS


def _record_all() -> None:
    for name, script in SCRIPTS.items():
        record(_path(name), script)


__all__ = ["Script", "order"]

if __name__ == "__main__":
    _record_all()
