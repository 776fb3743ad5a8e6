"""资源满足情况 (C.6 §3.1.1.5; the group report's ``resourceStatus``, config/reports/group.yaml): every
blueprint that asks 资管 (the resource center) whether there are resources saves its answer as
``data.resource_status`` — ``资源满足`` or ``资源不满足，需建设`` — and the value says what the order
then did: the construction stage (P14) or not. docs/reporting.md says where each blueprint reads it.
Driven through the pure engine in the catalogue-I partner world (tests/unit/catalogue1_world.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.catalogue1_world import Script, drive, order
from tests.unit.catalogue2_play_test import blueprint, library

NEEDS, SATISFIED = "资源不满足，需建设", "资源满足"
#: 资管's design reply saying "no construction" (P04.1's rule; the world's default says it is needed)
DESIGN_SAYS = {"resource.design_request": {"needs_construction": False}}
#: blueprint → 资管's answers meaning "resources there" (None: construction always); the world's defaults
#: mean "no resources" for every one of them
ASKING: dict[str, dict[str, dict[str, Any]] | None] = {
    "p01-1-dynamic-ip-line-open": DESIGN_SAYS,
    "p01-7-dynamic-ip-line-move": DESIGN_SAYS,
    "p02-1-internet-line-open": DESIGN_SAYS,
    "p02-2-internet-line-move": DESIGN_SAYS,
    "p03-1-business-express-open": DESIGN_SAYS,
    "p04-1-transmission-line-open": DESIGN_SAYS,
    "p05-1-mpls-vpn-open": {"resource.design_request": {"construction": "否"}},
    "p08-5-cross-province-transmission-open": DESIGN_SAYS,
    "p09-3-international-transmission-open": DESIGN_SAYS,
    "p10-3-cross-province-mpls-open": DESIGN_SAYS,
    "p11-6-cross-province-internet-open": {},
    "p15-voice-line-open": DESIGN_SAYS,
    "p24-1-video-mv-line-open": None,
}
#: 跨省互联网 asks by its allocation answer (the world's has no flag: resources there)
ANSWERS_NONE: dict[str, dict[str, dict[str, Any]]] = {
    "p11-6-cross-province-internet-open": {"resource.resource_allocation": {"needs_construction": True}}}


def test_every_blueprint_that_asks_for_resources_is_played_here() -> None:
    """A blueprint reading 资管's answer (needs_construction) or entering P14 belongs in ASKING: without
    ``resource_status`` its orders would report 资源满足情况 empty."""
    asking = {bp.name for bp in library() if bp.name != "p14-construction"
              and ("needs_construction" in (j := bp.model_dump_json()) or "p14-construction" in j)}
    assert asking == set(ASKING)


def played_state(name: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The engine state of an order of blueprint ``name`` played to its end with 资管's ``results``
    (the reports' tests store it as an order document's ``state``)."""
    bp = blueprint(name)
    d = drive(bp, Script(order(bp.product or "", bp.scenario or "", "G-1"), results=results))
    assert d.status == "completed" and d.state is not None, (name, d.nodes())
    return d.state


def play(name: str, results: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    state = played_state(name, results)
    return state["data"].get("resource_status", ""), [t["node"] for t in state["trail"]]


@pytest.mark.parametrize("name", sorted(ASKING))
def test_the_resource_centers_answer_is_saved_as_the_resource_status(name: str) -> None:
    status, trail = play(name, ANSWERS_NONE.get(name, {}))
    assert status == NEEDS and "construction" in trail
    if (there := ASKING[name]) is not None:
        status, trail = play(name, there)
        assert status == SATISFIED and "construction" not in trail


def test_cross_province_internet_keeps_the_first_answer_after_construction() -> None:
    """The second allocation (of what construction built) does not turn 资源不满足 into 资源满足."""
    status, trail = play("p11-6-cross-province-internet-open", ANSWERS_NONE["p11-6-cross-province-internet-open"])
    assert trail.count("resource_allocation") == 2 and status == NEEDS
