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
PRODUCTS = {"srv6_vpn"}

T1, T2 = {"next_team": "城区装维班组"}, {"next_team": "传输网络班组"}


def _scripts(*scripts: Script) -> dict[str, Script]:
    return {s.name: s for s in scripts}


SCRIPTS: dict[str, Script] = _scripts(
    # ---- P06 SRV6 VPN ---------------------------------------------------------------------------
    Script("p06_1_survey_pon_4_rows", "p06-1-srv6-survey", order("srv6_vpn", "survey", srv6_access="PON"),
           {"remote_survey": [{"survey_rows": ["r1", "r2", "r3"], **T1},      # PON: 2 or 4 rows (refused)
                              {"survey_rows": ["r1", "r2", "r3", "r4"], **T1}]}),
    Script("p06_3_change_survey_spn_2_rows", "p06-3-srv6-change-survey",
           order("srv6_vpn", "change_survey", srv6_access="SPN优享"),
           {"remote_survey": [{"survey_rows": ["r1", "r2", "r3", "r4"], **T1},  # SPN: exactly 2 (refused)
                              {"survey_rows": ["r1", "r2"], **T1}]}),
    Script("p06_2_open_ptn", "p06-2-srv6-open", order("srv6_vpn", "open", srv6_access="PTN双规"),
           {"design_confirm": [{"redo_design": "是"}, {}]}),
    Script("p06_4_speed_up_replace_pon", "p06-4-srv6-change",
           order("srv6_vpn", "change", srv6_access="PON", pe_ce_access="1"),
           {"accept": [{"change_type": "提速", **T1}],
            "design": [{"replace_device": "是", **T2},                          # 是否双规 missing (PE-CE 1)
                       {"replace_device": "是", "dual_homing": "是", "design_review_needed": "是", **T2}]}),
    Script("p06_4_speed_down_spn_no_replace", "p06-4-srv6-change",
           order("srv6_vpn", "change", srv6_access="SPN单规", pe_ce_access="2"),
           {"accept": [{"change_type": "降速", **T1}],
            "design": [{"replace_device": "是", **T2}, {**T2}]},               # 降速 locks 更换设备 to 否
           reject_calls=["cam.spn_activate"]),                                  # → 资源重查, activation again
    Script("p06_4_fiber_direct_offline", "p06-4-srv6-change",
           order("srv6_vpn", "change", srv6_access="光纤直驱", pe_ce_access="7"),
           {"accept": [{"change_type": "提速", "need_design": "否", **T1}]}),
    Script("p06_5_move_otn", "p06-5-srv6-move", order("srv6_vpn", "move", srv6_access="OTN")),
    Script("p06_6_suspend_pon", "p06-6-srv6-suspend", order("srv6_vpn", "suspend", srv6_access="PON"),
           reject_reports=["group.1"]),                                         # G2: a refused report, retried
    Script("p06_7_resume_pon", "p06-7-srv6-resume", order("srv6_vpn", "resume", srv6_access="PON")),
    Script("p06_8_terminate_from_ce_trans_type", "p06-8-srv6-terminate",
           order("srv6_vpn", "terminate", ceTransType="PTN单规")),
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
def test_playing_the_script_again_meets_its_recorded_expectations(name: str) -> None:
    """The script played now (partners and people answering) gives the calls, reports and end the
    recording promises — so a recording cannot drift from its script."""
    doc = json.loads(_path(name).read_text(encoding="utf-8"))
    assert expectations(Player(SCRIPTS[name]).run()) == doc["expect"]


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
