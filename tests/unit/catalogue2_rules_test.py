"""Catalogue II rules beyond SRV6 (issue 12 §2–§6): the dedicated-DNN name at intake and at submit, the
dual-domain changetype rules, 网络侧配置结果通知 holding the order, the slices' auto rules and 退单, the
SD-WAN flags, credit-control dispatch / re-dispatch and the cloud-network merge. Pure (the engine played
by tests/unit/catalogue2_play_test.py) except for the product-field check, which is the intake's own."""

from __future__ import annotations

import functools

import pytest

from hub.errors import ValidationFailed
from hub.products import check_order, load_products
from tests.unit.catalogue2_play_test import CONFIG, Player, Script, calls_made, order, reports_sent
from tests.unit.catalogue2_replay_test import SCRIPTS


@functools.cache
def play(name: str) -> Player:
    p = Player(SCRIPTS[name])
    p.run()
    return p


def refusals(p: Player) -> list[dict[str, str]]:
    return [e for r in p.refused for e in r["errors"]]


# ---- P32 the dedicated DNN name ----------------------------------------------------------------------
@pytest.mark.parametrize("dnn", ["HZ5GSYZWACME.ZJ", "NB5GSYZWXYZ01.ZJ"])
def test_a_dedicated_dnn_in_the_expected_form_passes_the_intake(dnn: str) -> None:
    check_order(
        load_products(CONFIG)["dual_domain_dedicated"], "open", order("dual_domain_dedicated", "open", dnn_name=dnn)
    )


@pytest.mark.parametrize("dnn", ["HZ5GACME.ZJ", "HZ5GSYZWACME.SH", "hz5gsyzwacme.zj", "5GSYZWACME.ZJ"])
def test_the_intake_refuses_another_dnn_name_and_says_the_expected_form(dnn: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_order(
            load_products(CONFIG)["dual_domain_dedicated"], "open", order("dual_domain_dedicated", "open", dnn_name=dnn)
        )
    (e,) = err.value.errors
    assert e["field"] == "extensions.dnn_name"
    assert "地市简称 + 5GSYZW + 企业简称 + .ZJ" in e["message"] and "HZ5GSYZWACME.ZJ" in e["message"]


def test_at_submit_the_dnn_name_is_the_citys_and_enterprises_and_the_error_shows_it() -> None:
    p = play("p32_1_open_dnn_name_checked")
    assert refusals(p) == [{"field": "dnn_name", "message": "locked to 'HZ5GSYZWACME.ZJ'"}]
    assert p.d.state["data"]["dnn_name"] == "HZ5GSYZWACME.ZJ"  # type: ignore[index]


# ---- P30/P31 changetype rules, 201 from the network-config notification ----------------------------------
def test_changetype_1_forbids_the_verification_team_locks_the_flags_and_skips_verification() -> None:
    p = play("p30_2_change_type_1")
    assert refusals(p) == [
        {"field": "verify_team", "message": "locked to ''"},
        {"field": "construction", "message": "locked to '否'"},
    ]
    assert "group.network_config_notify" not in calls_made(p.d.steps)


def test_changetype_3_requires_the_verification_team_and_the_refused_notification_holds_the_order() -> None:
    p = play("p30_2_change_type_3")
    assert refusals(p) == [{"field": "verify_team", "message": "required"}]
    calls = calls_made(p.d.steps)
    assert calls.count("group.network_config_notify") == 2  # refused, then sent again by the user
    assert calls.index("group.close_report") > calls.index("group.network_config_notify")
    assert any(s["event"].get("node") == "failed_call" for s in p.d.steps)


def test_dual_domain_open_requires_the_team_of_each_flag_set_to_yes_and_withdraws_at_network_change() -> None:
    assert refusals(play("p30_1_open")) == [{"field": "construction_team", "message": "required"}]
    w = play("p30_1_withdraw_at_network_change")
    assert w.d.status == "cancelled" and "group.progress_report:B602finished" in reports_sent(w.d.steps)


def test_removal_failed_requires_the_close_note() -> None:
    p = play("p30_3_remove_failed")
    assert refusals(p) == [{"field": "close_note", "message": "required"}]
    (close,) = [
        c for s in p.d.steps for c in s["commands"] if c["type"] == "send_call" and c["operation"] == "close_report"
    ]
    assert (close["payload"]["resultCode"], close["payload"]["resultDesc"]) == ("0", "设备未回收")


# ---- P26 slices --------------------------------------------------------------------------------------
def manual_stages(p: Player) -> list[str]:
    return [s["event"]["node"] for s in p.d.steps if s["event"]["type"] == "submission"]


def test_gre_runs_the_first_five_stages_as_system_and_direct_four() -> None:
    gre = play("p26_1_open_gre_auto")
    assert not {
        "accept_manual",
        "e2e_prelim_design_manual",
        "core_detail_design_manual",
        "design_review_manual",
        "network_change_manual",
    } & set(manual_stages(gre))
    assert gre.d.state["data"]["_operators"]["accept_auto"] == "系统自动"  # type: ignore[index]
    direct = play("p26_1_open_direct_withdrawn")
    assert "e2e_prelim_design_manual" in manual_stages(direct) and "accept_manual" not in manual_stages(direct)
    manual = play("p26_2_change_manual")  # 公网NAT without A3: everything by hand
    assert "accept_manual" in manual_stages(manual)


def test_direct_networking_keeps_the_no_tunnel_allocation_table() -> None:
    data = play("p26_1_open_direct_withdrawn").d.state["data"]  # type: ignore[index]
    assert (data["upf_sub_interface"], data["vlan_id"], data["dcgw1_bgp_peer_ipv4"], data["upf_loopback"]) == (
        "GE1/0/1.100",
        "100",
        "10.9.9.1",
        "10.8.8.8",
    )


def test_withdraw_after_network_change_released_then_approved_undoes_and_ends_withdrawn() -> None:
    p = play("p26_1_open_direct_withdrawn")
    nodes = manual_stages(p)
    assert nodes[-4:] == ["hq_ne_data", "withdraw_approval", "hq_ne_data", "withdraw_approval"]  # 解除退单, then 同意
    assert calls_made(p.d.steps)[-2:] == ["core_workbench.upf_config", "resource.resource_change_notify"]
    assert p.d.status == "cancelled"


def test_an_operator_cancel_of_a_slice_open_undoes_the_allocation_and_the_upf_config() -> None:
    s = Script("cancel", "p26-1-5g-slice-general-open", order("5g_slice_general", "open", networking="GRE"))
    p = Player(s)
    p._answer(p.d.receive("O1", **s.data))
    cmds = p.d.send({"type": "cancel", "reason": "撤单"}, after=60)
    undo = [(c["partner"], c["operation"]) for c in cmds if c["type"] == "send_call" and c["purpose"] == "compensate"]
    assert undo == [("core_workbench", "upf_config"), ("resource", "resource_change_notify")]


def test_order_return_released_keeps_the_slice() -> None:
    assert calls_made(play("p26_4_order_return_released").d.steps) == ["esop.close_report"]
    assert calls_made(play("p26_4_order_return_approved").d.steps)[:2] == [
        "core_workbench.upf_config",
        "resource.resource_change_notify",
    ]


# ---- P07 SD-WAN, P11/P12 credit control, P16 merge, P17 EOMS ---------------------------------------------
def test_sdwan_skips_activation_and_install_by_the_network_change_flags() -> None:
    assert refusals(play("p07_1_open")) == [{"field": "activation_dept", "message": "required"}]
    assert "ip_workbench.activation" in calls_made(play("p07_1_open").d.steps)
    assert "fieldapp.todo[install]" in calls_made(play("p07_1_open").d.steps)
    skipped = calls_made(play("p07_2_suspend_no_activation").d.steps)
    assert "ip_workbench.activation" not in skipped and "fieldapp.todo[install]" not in skipped


def test_credit_control_re_dispatch_is_executed_and_replied_with_its_kind_and_fields() -> None:
    p = play("p11_1_credit_suspend_redispatch")
    (act,) = [
        c for s in p.d.steps for c in s["commands"] if c["type"] == "send_call" and c["operation"] == "activation"
    ]
    assert act["payload"] == {"orderId": "O1", "action": "停机", "dispatchKind": "重派"}
    (reply,) = [
        c for s in p.d.steps for c in s["commands"] if c["type"] == "send_call" and c["operation"] == "order_reply"
    ]
    assert (reply["payload"]["dispatchKind"], reply["payload"]["suspend_scene"]) == ("重派", "欠费")


def test_survey_reply_carries_the_rows_extra_fields() -> None:
    p = play("p11_4_survey")
    (reply,) = [
        c for s in p.d.steps for c in s["commands"] if c["type"] == "send_call" and c["operation"] == "survey_reply"
    ]
    assert {"total_days", "cable_length_km", "property_cost_wan", "building_scene"} <= set(reply["payload"])


def test_open_audit_goes_back_to_verification_until_it_passes() -> None:
    p = play("p08_5_open_audit_loop")
    assert manual_stages(p) == ["verification", "verification"] and p.d.state["data"]["audits"] == 2  # type: ignore[index]


def test_merge_on_both_sides_keeps_each_sides_config_result() -> None:
    p = play("p16_3_both_sides")
    assert calls_made(p.d.steps) == [
        "group.resource_preoccupy",
        "group.cloud_config",
        "group.resource_preoccupy",
        "group.cloud_config",
    ]
    data = p.d.state["data"]  # type: ignore[index]
    assert (data["net_rt"], data["cloud_rd"], data["net_nePeId"]) == ("65000:2", "65000:1", "PE-1")
