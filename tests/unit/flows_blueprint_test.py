"""Blueprints are validated at load, with errors naming the file, the line and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.blueprint import load_blueprints, parse_duration
from hub.errors import ConfigError
from hub.partners import load_partners
from hub.settings import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "config"


def test_shipped_blueprints_load_and_cover_the_first_products() -> None:
    bps = load_blueprints(CONFIG, load_partners(CONFIG))
    keys = {bp.key for bp in bps}
    assert {("internet_line", "open"), ("5g_lan", "open")} <= keys
    lan = bps.get("5g_lan", "open")
    assert lan is not None
    codes = [f"{r.code}{r.state}" for s in lan.stages for hooks in (s.on_enter, s.on_submit) for r in hooks.reports]
    assert codes == ["B001processing", "B002finished", "B003finished", "B005finished", "B004finished",
                     "B006processing"]
    assert all(r.gate and set(r.to) == {"group", "esop"} for s in lan.stages for r in s.on_enter.reports)


def _config_with(tmp_path: Path, name: str, text: str) -> Path:
    cfg = tmp_path / "config"
    shutil.copytree(CONFIG, cfg)
    (cfg / "flows" / name).write_text(text, encoding="utf-8")
    return cfg


BAD_KIND = """product: demo_line
scenario: open
stages:
  - name: accept
    kind: auto
  - name: design
    kind: teleport
"""


def test_bad_stage_kind_names_file_line_and_key(tmp_path: Path) -> None:
    cfg = _config_with(tmp_path, "demo.yaml", BAD_KIND)
    with pytest.raises(ConfigError) as err:
        load_blueprints(cfg, load_partners(cfg))
    problems = "\n".join(err.value.problems)
    assert f"{cfg / 'flows' / 'demo.yaml'}:7: stages[1].kind:" in problems
    assert "'auto'" in problems and "'manual'" in problems


BAD_REFS = """product: demo_line
scenario: open
stages:
  - name: accept
    kind: auto
    on_enter:
      reports: [{code: B001, state: processing, to: [nobody]}]
  - name: design
    kind: call
    calls:
      - {to: [resource], operation: teleport}
    transitions:
      - {to: accept, when: {field: data.design.teleport.ok, equals: false}}
  - name: close
    kind: auto
    auto: {action: launch_rockets}
"""


def test_references_to_partners_operations_and_actions_are_checked(tmp_path: Path) -> None:
    cfg = _config_with(tmp_path, "demo.yaml", BAD_REFS)
    with pytest.raises(ConfigError) as err:
        load_blueprints(cfg, load_partners(cfg))
    problems = err.value.problems
    path = cfg / "flows" / "demo.yaml"
    assert any(p.startswith(f"{path}:7: stages[0].on_enter.reports[0].to: unknown partner 'nobody'") for p in problems)
    assert any(p.startswith(f"{path}:11: stages[1].calls[0].to: partner 'resource' has no outbound operation "
                            "'teleport'") for p in problems)
    assert any("stages[2].auto.action: unknown auto action 'launch_rockets'" in p for p in problems)


@pytest.mark.parametrize("text, message", [
    ("product: x\nscenario: open\nstages:\n  - {name: a, kind: auto, transitions: [{to: nowhere}]}\n",
     "transition to unknown stage 'nowhere'"),
    ("product: x\nscenario: open\nstages:\n  - {name: a, kind: auto}\n  - {name: a, kind: auto}\n",
     "stage names must be unique: a"),
    ("product: x\nscenario: open\nstages:\n  - {name: a, kind: call}\n", "a call stage needs calls"),
    ("product: x\nscenario: open\nstages:\n  - {name: a, kind: manual, sla: soon}\n", "duration must look like"),
    ("product: x\nscenario: reopen\nstages:\n  - {name: a, kind: auto}\n", "scenario"),
    ("product: x\nscenario: open\nstages:\n  - name: a\n    kind: auto\n    skip_when: {field: order.x}\n",
     "give exactly one of equals, not_equals, in, exists"),
])
def test_invalid_blueprints_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    cfg = _config_with(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_blueprints(cfg, load_partners(cfg))
    assert message in "\n".join(err.value.problems)


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90", "90s", "15m", "4h", "2d", 30)] == [90, 90, 900, 14400, 172800, 30]
