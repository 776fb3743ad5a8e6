"""SRV6 VPN (CATALOGUE P06, issue 12 §1): the rules a recorded order alone would not name — the P06.4
design locks, the remote-survey row counts, activation by access type, the close-out by 更换设备, G6 on
every stage and G7 reminders. Pure: the engine played by tests/unit/catalogue2_play_test.py."""

from __future__ import annotations

import functools

import pytest

from tests.unit.catalogue2_play_test import Player, Script, calls_made, library, order, reports_sent
from tests.unit.catalogue2_replay_test import SCRIPTS

T = {"next_team": "城区装维班组"}


@functools.cache
def play(name: str) -> Player:
    """A recorded script played once per test run (the tests only read the result)."""
    p = Player(SCRIPTS[name])
    p.run()
    return p


def refusals(p: Player) -> list[dict[str, str]]:
    return [e for r in p.refused for e in r["errors"]]


def test_remote_survey_pon_takes_2_or_4_rows_and_spn_exactly_2() -> None:
    pon = refusals(play("p06_1_survey_pon_4_rows"))
    assert pon == [{"field": "pon_row_count", "message": "must be one of [2, 4]"}]
    spn = refusals(play("p06_3_change_survey_spn_2_rows"))
    assert spn == [{"field": "spn_row_count", "message": "must be one of [2]"}]


def test_design_rules_of_p06_4() -> None:
    up = play("p06_4_speed_up_replace_pon")
    assert refusals(up) == [{"field": "dual_homing", "message": "required"}]          # PE-CE 1 → 是否双规
    data = up.d.state["data"]  # type: ignore[index]
    assert (data["replace_device"], data["dispatch_app"]) == ("是", "是")              # 更换=是 & not 光纤直驱
    assert data["resource_entry"] == "是"                                              # locked by 更换=是
    down = play("p06_4_speed_down_spn_no_replace")
    assert refusals(down) == [{"field": "replace_device", "message": "locked to '否'"}]  # 降速 → 否
    data = down.d.state["data"]  # type: ignore[index]
    assert (data["dispatch_app"], data["design_review_needed"]) == ("否", "否")
    assert [data[k] for k in ("construction", "resource_entry", "office_data", "install")] == ["否"] * 4


def test_design_review_runs_only_when_asked_and_redo_requests_the_design_again() -> None:
    nodes = [s["event"].get("node") for s in play("p06_4_speed_up_replace_pon").d.steps]
    assert "design_review" in nodes
    assert "design_review" not in [s["event"].get("node") for s in play("p06_4_speed_down_spn_no_replace").d.steps]
    assert calls_made(play("p06_2_open_ptn").d.steps).count("resource.srv6_design_request") == 2


def test_redo_is_locked_to_no_when_the_resource_center_did_not_answer_0() -> None:
    s = Script("x", "p06-2-srv6-open", order("srv6_vpn", "open", srv6_access="PON"),
               {"design_confirm": [{"redo_design": "是"}, {}]},
               results={"resource.srv6_design_request": {"resultCode": "1"}})
    p = Player(s)
    p.run()
    assert refusals(p) == [{"field": "redo_design", "message": "locked to '否'"}]


@pytest.mark.parametrize(("name", "expected"), [
    ("p06_4_speed_up_replace_pon", ["cam.sr_activate[SR:拆除]", "cam.gpon_activate[GPON:拆除]",
                                    "cam.gpon_activate[GPON:开通]", "cam.sr_activate[SR:开通]"]),
    ("p06_2_open_ptn", ["cam.ptn_activate[PTN:开通]", "cam.sr_activate[SR:开通]"]),
    ("p06_4_speed_down_spn_no_replace", ["cam.spn_activate[SPN:降速]", "cam.spn_activate[SPN:降速]"]),
    ("p06_5_move_otn", ["cam.otn_activate[OTN:拆除]", "cam.otn_activate[OTN:开通]"]),
    ("p06_4_fiber_direct_offline", []),
])
def test_activation_by_access_type_in_order(name: str, expected: list[str]) -> None:
    p = play(name)
    assert [c for c in calls_made(p.d.steps) if c.startswith("cam.")] == expected
    if name == "p06_4_fiber_direct_offline":
        assert p.d.state["data"]["offline_notice"] == "不支持线上激活，请线下处理"  # type: ignore[index]


def test_a_failed_activation_goes_to_resource_recheck_then_activates_again() -> None:
    calls = calls_made(play("p06_4_speed_down_spn_no_replace").d.steps)
    i = calls.index("resource.srv6_config_query")
    assert calls[i - 1] == calls[i + 1] == "cam.spn_activate[SPN:降速]"


def test_gpon_then_sr_the_second_step_waits_for_the_first() -> None:
    p = play("p06_7_resume_pon")
    sent = [(i, c["operation"]) for i, s in enumerate(p.d.steps) for c in s["commands"]
            if c["type"] == "send_call" and c["partner"] == "cam"]
    gpon_poll = [i for i, op in sent if op == "result_query"]
    sr = [i for i, op in sent if op == "sr_activate"]
    assert gpon_poll and sr and gpon_poll[0] < sr[0]                 # SR only after GPON's result query


@pytest.mark.parametrize(("name", "tail"), [
    ("p06_4_speed_down_spn_no_replace", ["group.ce_change_reply", "resource.resource_change_notify"]),   # 更换=否
    ("p06_4_speed_up_replace_pon", ["resource.srv6_archive", "group.ce_change_reply"]),                 # 更换=是
    ("p06_6_suspend_pon", ["resource.resource_change_notify", "group.ce_suspend_resume_reply"]),
    ("p06_8_terminate_from_ce_trans_type", ["resource.srv6_archive", "group.ce_terminate_reply"]),
])
def test_close_out(name: str, tail: list[str]) -> None:
    assert calls_made(play(name).d.steps)[-2:] == tail


@pytest.mark.parametrize("name", [n for n in SCRIPTS if n.startswith("p06_")])
def test_g6_every_stage_reports_1_on_entering_and_2_on_submitting_with_g7_sms(name: str) -> None:
    p = play(name)
    reports = reports_sent(p.d.steps)
    stages = [r.split(":", 1)[1] for r in reports if r.startswith("group.progress_report:")]
    for stage in {s.split("/")[0] for s in stages}:
        assert f"{stage}/1" in stages and f"{stage}/2" in stages, (stage, stages)
    bp = p.bp
    entered = {s["event"].get("node") for s in p.d.steps if s["event"]["type"] == "submission"}
    for node in entered - {"design_confirm", "failed_call"}:
        assert any(r.at == "enter" and r.partner == "sms" for r in bp.nodes[node].reports), node
    assert len({s.split("/")[0] for s in stages}) >= 3


def test_g6_reports_carry_the_stage_name_as_progress_and_the_team_chosen_before() -> None:
    p = play("p06_4_speed_up_replace_pon")
    design = [c["payload"] for s in p.d.steps for c in s["commands"]
              if c["type"] == "send_report" and c["partner"] == "group" and c["payload"].get("stage") == "design"]
    assert design[0]["stage_title"] == "方案设计" and design[0]["desc_outline"] == 1
    assert design[0]["team"] == "城区装维班组"                          # accept's next_team


def test_every_srv6_blueprint_is_in_the_library() -> None:
    scenarios = {bp.scenario for bp in library() if bp.product == "srv6_vpn"}
    assert scenarios == {"survey", "open", "change_survey", "change", "move", "suspend", "resume", "terminate"}


