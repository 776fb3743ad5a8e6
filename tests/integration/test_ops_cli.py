"""``hub rules``, ``hub alerts`` and ``hub overview`` in-process (typer's CliRunner) against the real
MongoDB, settings from the environment like a real invocation."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from openpyxl import load_workbook

from app.ops.evaluator import Evaluator
from app.ops.settings import OpsSettings
from flows.documents import ORDERS
from hub import db as hubdb
from hub.settings import Settings
from tests.integration.test_orders_cli import env, hub
from tests.unit.ops_rules_test import T0, order

pytestmark = pytest.mark.integration
__all__ = ["env"]  # the fixture, shared with test_orders_cli


def _seed_and_evaluate(settings: Settings) -> None:
    async def main() -> None:
        client = hubdb.connect(settings)
        db = hubdb.database(client, settings)
        try:
            now = T0 + 7200
            await db[ORDERS].insert_many([order("late", since=T0, deadline=now - 5), order("fresh", since=now)])
            await Evaluator(db, settings=OpsSettings(), clock=lambda: now).cycle()
        finally:
            client.close()

    asyncio.run(main())


def test_rules_alerts_and_overview_commands(env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    out = hub(env, "rules", "add", "--id", "DESIGN-1H", "--name", "design over an hour", "--product",
              "internet_line", "--stage", "design", "--when", "data.time_in_stage_s > 3600", "--severity", "major",
              "--as", "ops:li", "--json")
    assert json.loads(out)["updated_by"] == "ops:li"
    bad = hub(env, "rules", "add", "--id", "X", "--name", "x", "--when", "data.nope > 1", code=2)
    assert "unknown fact data.nope" in bad
    (tmp_path / "r.yaml").write_text("id: GATE\nname: refused report\nwhen: data.gate_failed\n", encoding="utf-8")
    hub(env, "rules", "add", "--file", str(tmp_path / "r.yaml"))
    listed = json.loads(hub(env, "rules", "list", "--json"))
    assert [r["id"] for r in listed] == ["DESIGN-1H", "GATE"]
    assert [r["id"] for r in json.loads(hub(env, "rules", "list", "--q", "refused", "--json"))] == ["GATE"]
    edited = json.loads(hub(env, "rules", "edit", "DESIGN-1H", "--severity", "critical", "--json"))
    assert edited["severity"] == "critical" and edited["version"] == 2
    assert json.loads(hub(env, "rules", "disable", "GATE", "--json"))["enabled"] is False
    assert "rule GATE deleted" in hub(env, "rules", "delete", "GATE")
    hub(env, "rules", "show", "GATE", code=1)

    _seed_and_evaluate(settings)
    snap = json.loads(hub(env, "overview", "--json"))
    assert snap["totals"] == {"in_flight": 2, "overdue": 1, "due_soon": 0, "stuck": 1, "blocked": 0}
    stuck = json.loads(hub(env, "overview", "--state", "stuck", "--json"))
    assert [o["order_id"] for o in stuck] == ["late"]
    alerts = json.loads(hub(env, "alerts", "list", "--json"))
    assert alerts["total"] == 1 and alerts["items"][0]["severity"] == "critical"
    aid = alerts["items"][0]["id"]
    assert "now tracking" in hub(env, "alerts", "ack", aid, "--note", "looking", "--as", "ops:li")
    assert "assigned to ops:wang" in hub(env, "alerts", "assign", aid, "ops:wang", "--as", "ops:li")
    hub(env, "alerts", "close", aid, code=1)  # not resolved yet
    hub(env, "alerts", "resolve", aid, "--note", "fixed")
    shown = hub(env, "alerts", "show", aid)
    assert "handling records" in shown and "ops:wang" in shown
    hub(env, "alerts", "export", "--status", "any", "--output", str(tmp_path / "a.csv"))
    with (tmp_path / "a.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [(r["alert"], r["status"], r["assignee"]) for r in rows] == [(aid, "resolved", "ops:wang")]

    hub(env, "exports", "orders", "--format", "xlsx", "--output", str(tmp_path / "o.xlsx"))
    sheet = load_workbook(tmp_path / "o.xlsx", read_only=True)["orders"]
    table = [r[0] for r in sheet.iter_rows(values_only=True)]
    assert table[0] == "order" and sorted(table[1:]) == ["fresh", "late"]  # same created_at: either order
    listed_orders = json.loads(hub(env, "exports", "orders", "--json"))
    assert {o["id"]: o["reentered"] for o in listed_orders} == {"fresh": False, "late": False}
