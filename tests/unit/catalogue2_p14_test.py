"""P14 in the cross-province and international opens (CATALOGUE P08.5, P09.3, P10.3, P11.6; issue 12).

The four rows say "P14 applies": when 资管 has no resources the open dispatches a construction order
to the construction platform through the p14-construction sub-flow (§3.1.1.5) and goes on after its
result; with resources it goes on as before (those recordings stay in catalogue2_replay_test). Each
recording here (tests/fixtures/flows/replay/c2_<script>.json) holds the parent's steps and, under
``children``, the steps of every sub-flow order it started, both replayed through today's engine; its
expect block says the calls of the parent and of each child in plain words. Re-record a meant change
with ``.venv/bin/python -m tests.unit.catalogue2_p14_test`` (then read the diff of the expect blocks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.graph import step
from tests.unit.catalogue2_play_test import REPLAYS, Player, Script, blueprint, calls_made, order, reports_sent

#: the construction platform's final reply: the live progress fields of §3.1.1.5 (names as the simulator's)
CONSTRUCTION: dict[str, Any] = {
    "code": "0", "status": "completed", "manager": "王工", "phone": "13800000000", "designer": "李工",
    "design_start": "2026-01-05", "design_end": "2026-01-09", "start_date": "2026-01-12", "end_date": "2026-01-30",
    "cost": 1200}
NO_SCHEME: dict[str, dict[str, Any]] = {"resource.design_request": {"needs_construction": True},
                                        "construction.construction_order": CONSTRUCTION}
NO_ALLOCATION: dict[str, dict[str, Any]] = {"resource.resource_allocation": {"needs_construction": True},
                                            "construction.construction_order": CONSTRUCTION}
P09_FIELDS = {"domestic_operator_address": "上海浦东1号", "building_type": "写字楼", "building_owner": "业主",
              "cabinet_owner": "运营商", "test_ok": True}

SCRIPTS: dict[str, Script] = {s.name: s for s in (
    Script("p08_5_open_no_resources", "p08-5-cross-province-transmission-open",
           order("cross_province_transmission", "open"),
           {"verification": [{"test_standard": "RFC2544", "test_ok": True}]}, NO_SCHEME),
    Script("p08_5_open_construction_refused_then_clicked", "p08-5-cross-province-transmission-open",
           order("cross_province_transmission", "open"),
           {"verification": [{"test_standard": "RFC2544", "test_ok": True}]}, NO_SCHEME,
           reject_calls=["construction.construction_order"]),
    Script("p09_3_open_no_resources", "p09-3-international-transmission-open",
           order("international_transmission", "open"), {"verification": [P09_FIELDS]}, NO_SCHEME),
    Script("p10_3_open_no_resources", "p10-3-cross-province-mpls-open", order("cross_province_mpls", "open"), {},
           NO_SCHEME),
    Script("p11_6_open_no_resources", "p11-6-cross-province-internet-open",
           order("cross_province_internet", "open"), {}, NO_ALLOCATION),
)}
#: the no-resource recording of each blueprint (the refused dispatch is an extra one of P08.5)
NO_RESOURCES = {"p08-5-cross-province-transmission-open": "p08_5_open_no_resources",
                "p09-3-international-transmission-open": "p09_3_open_no_resources",
                "p10-3-cross-province-mpls-open": "p10_3_open_no_resources",
                "p11-6-cross-province-internet-open": "p11_6_open_no_resources"}
#: the with-resources recordings of the same blueprints (tests/unit/catalogue2_replay_test.py)
WITH_RESOURCES = {"p08-5-cross-province-transmission-open": "p08_5_open_audit_loop",
                  "p09-3-international-transmission-open": "p09_3_open",
                  "p10-3-cross-province-mpls-open": "p10_3_open",
                  "p11-6-cross-province-internet-open": "p11_6_open"}


def _path(name: str) -> Path:
    return REPLAYS / f"c2_{name}.json"


def _steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"at": s["at"], "event": s["event"], "commands": s["commands"]} for s in steps]


def expectations(steps: list[dict[str, Any]], children: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"calls": calls_made(steps), "reports": reports_sent(steps), "status": status,
            "subflows": [{"blueprint": c["blueprint"], "calls": calls_made(c["steps"]), "status": c["status"]}
                         for c in children]}


def record(path: Path, script: Script) -> None:
    """Play ``script`` (its sub-flows too) and write its recording; run by hand when a change is meant."""
    p = Player(script)
    d = p.run()
    children = [{"child_id": c["child_id"], "blueprint": c["blueprint"], "status": c["driver"].status,
                 "steps": _steps(c["driver"].steps)} for c in p.children]
    doc = {"blueprint": script.blueprint, "script": script.name,
           "expect": expectations(d.steps, children, d.status), "steps": _steps(d.steps), "children": children}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _replay(bp_name: str, steps: list[dict[str, Any]], what: str) -> str:
    bp = blueprint(bp_name)
    state: dict[str, Any] | None = None
    for i, s in enumerate(steps):
        state, commands = step(bp, state, s["event"], s["at"])
        assert commands == s["commands"], f"{what}: step {i} ({s['event']['type']}) differs"
    assert state is not None
    return str(state["status"])


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_recorded_order_and_its_sub_flows_replay_to_identical_commands(name: str) -> None:
    path = _path(name)
    assert path.is_file(), f"missing {path}: re-record (see the module docstring)"
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["blueprint"] == SCRIPTS[name].blueprint
    assert _replay(doc["blueprint"], doc["steps"], name) == doc["expect"]["status"]
    for c in doc["children"]:
        assert _replay(c["blueprint"], c["steps"], f"{name}/{c['child_id']}") == c["status"]
    assert expectations(doc["steps"], doc["children"], doc["expect"]["status"]) == doc["expect"]


@pytest.mark.parametrize("bp_name", sorted(NO_RESOURCES))
def test_without_resources_the_open_dispatches_construction_then_completes(bp_name: str) -> None:
    """P14 applies (CATALOGUE P08.5, P09.3, P10.3, P11.6): no resources → the p14-construction sub-flow
    pushes the construction order to the platform (工单推送, construction_order), its reply comes back
    into the order (the live progress fields), and the open goes on to verification and completes."""
    p = Player(SCRIPTS[NO_RESOURCES[bp_name]])
    d = p.run()
    assert [c["blueprint"] for c in p.children] == ["p14-construction"], "no construction sub-flow started"
    child = p.children[0]["driver"]
    assert calls_made(child.steps) == ["construction.construction_order"] and child.status == "completed"
    assert d.status == "completed"
    assert d.state is not None and d.state["data"]["construction"]["manager"] == "王工"
    trail = [t["node"] for t in d.state["trail"]]
    assert trail.index("construction") < trail.index("verification") < trail.index("close_report")
    reported = reports_sent(d.steps)
    assert "group.realtime_report:工程施工" in reported  # the stage is reported to 一编 like the others
    assert calls_made(d.steps)[-1] == "group.order_reply"


@pytest.mark.parametrize("bp_name", sorted(WITH_RESOURCES))
def test_with_resources_the_open_goes_on_without_construction(bp_name: str) -> None:
    from tests.unit.catalogue2_replay_test import SCRIPTS as WITH

    p = Player(WITH[WITH_RESOURCES[bp_name]])
    d = p.run()
    assert p.children == [] and d.status == "completed"
    assert d.state is not None and "construction" not in [t["node"] for t in d.state["trail"]]


def test_p11_6_allocates_again_after_construction_and_only_once_sends_it_to_construction() -> None:
    """The built resources are allocated once more; a second "no resources" does not loop (inferred)."""
    d = Player(SCRIPTS["p11_6_open_no_resources"]).run()
    assert calls_made(d.steps)[:2] == ["resource.resource_allocation", "resource.resource_allocation"]
    assert d.state is not None
    trail = [t["node"] for t in d.state["trail"]]
    assert trail[trail.index("resource_allocation"):trail.index("verification")] == [
        "resource_allocation", "construction", "resource_allocation"]


def test_a_refused_construction_dispatch_waits_for_the_click_then_dispatches_again_g3() -> None:
    p = Player(SCRIPTS["p08_5_open_construction_refused_then_clicked"])
    d = p.run()
    assert [c["driver"].status for c in p.children] == ["failed", "completed"]
    assert d.state is not None and d.status == "completed"
    trail = [t["node"] for t in d.state["trail"]]
    assert trail[trail.index("construction"):trail.index("verification")] == [
        "construction", "construction_failed", "construction"]


def _record_all() -> None:
    for name, script in SCRIPTS.items():
        record(_path(name), script)


if __name__ == "__main__":
    _record_all()
