"""Drive the pure v2 engine in tests: an injected clock, the commands of every step, and replay files.

A replay file (tests/fixtures/flows/replay/*.json) is a recorded conversation with the engine: the
blueprint it ran on and, for every step, the time, the event and the commands that came out. Replaying
it through today's engine must give the same commands, so a blueprint or engine edit that would change
what a running order does fails a test. ``record`` (re)writes one from a scenario driven in Python.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.graph import Blueprint, step
from flows.graph.check import load_blueprint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows"

#: partner operations the fixtures may name: the shipped partner files plus the activation module (CAM),
#: whose partner file does not exist yet (its operations are those of CATALOGUE P06.4 / B.7).
CAM_OPERATIONS = {"gpon_activate", "sr_activate", "ptn_activate", "spn_activate", "otn_activate",
                  "result_query", "cancel", "deactivate"}


def fixture_blueprint(name: str) -> Blueprint:
    return load_blueprint(FIXTURES / f"{name}.yaml")


class Driver:
    """One order going through the engine; ``now`` only moves when the test says so."""

    def __init__(self, blueprint: Blueprint, *, now: float = 1_700_000_000.0) -> None:
        self.bp = blueprint
        self.now = now
        self.state: dict[str, Any] | None = None
        self.steps: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any], *, after: float = 0.0) -> list[dict[str, Any]]:
        self.now += after
        given = self.state
        before = json.dumps(given, sort_keys=True)
        self.state, commands = step(self.bp, given, event, self.now)
        assert json.dumps(given, sort_keys=True) == before, "step() changed its input state"
        json.dumps([self.state, commands])  # state and commands are JSON as they are
        self.steps.append({"at": self.now, "event": event, "commands": commands,
                           "state_after": json.loads(json.dumps(self.state))})
        return commands

    def receive(self, order_id: str = "O1", **data: Any) -> list[dict[str, Any]]:
        return self.send({"type": "order_received", "order_id": order_id, "data": data})

    @property
    def status(self) -> str:
        assert self.state is not None
        return str(self.state["status"])

    def nodes(self) -> list[str]:
        """Where the order's tokens are now (sorted, several for parallel branches)."""
        assert self.state is not None
        return sorted(t["node"] for t in self.state["tokens"].values())


def of_type(commands: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in commands if c["type"] == kind]


def one(commands: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_type(commands, kind)
    assert len(found) == 1, f"expected one {kind}, got {commands}"
    return found[0]


def record(path: Path, blueprint_file: str, driver: Driver) -> None:
    """Write ``driver``'s steps as a replay file (run by hand when a change is meant)."""
    steps = [{"at": s["at"], "event": s["event"], "commands": s["commands"]} for s in driver.steps]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"blueprint": blueprint_file, "steps": steps}, ensure_ascii=False, indent=1) + "\n",
                    encoding="utf-8")


def replay(path: Path, blueprint: Blueprint | None = None,
           ) -> list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]]:
    """Replay a file (on its own blueprint, or on ``blueprint`` — an edit being tried); return
    ``(step index, recorded, replayed)`` for every step that differs."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    bp = blueprint or fixture_blueprint(doc["blueprint"])
    state: dict[str, Any] | None = None
    diffs = []
    for i, s in enumerate(doc["steps"]):
        state, commands = step(bp, state, s["event"], s["at"])
        if commands != s["commands"]:
            diffs.append((i, s["commands"], commands))
    return diffs
