"""``hub jobs`` and ``hub reports`` in-process (typer's runner) against the session's real servers:
listings with --json, a manual run recorded in the history, rules CRUD, a reconciliation by file,
a regenerated day; refusals exit non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from hub.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {"HUB_TOPIC_PREFIX": settings.topic_prefix, "HUB_MONGO_DB": settings.mongo_db, "COLUMNS": "250"}


def hub(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def test_hub_jobs_list_run_history(env: dict[str, str]) -> None:
    listed = json.loads(hub(env, "jobs", "list", "--json"))
    assert {"group-daily-files", "daily-audit", "release-reservations"} <= {j["name"] for j in listed["items"]}
    run = json.loads(hub(env, "jobs", "run", "group-daily-files", "-p", "day=2026-03-01", "--as", "ops:li", "--json"))
    assert run["status"] == "succeeded" and run["trigger"] == "manual:ops:li" and run["params"]["day"] == "2026-03-01"
    history = json.loads(hub(env, "jobs", "history", "group-daily-files", "--json"))
    assert [r["id"] for r in history["items"]] == [run["id"]]
    hub(env, "jobs", "run", "nope", code=1)


def test_hub_reports_overview_rules_reconcile_regenerate(env: dict[str, str], tmp_path: Path) -> None:
    reports = json.loads(hub(env, "reports", "list", "--json"))
    assert len(reports["items"]) == 19  # C.6.15 has two
    overview = json.loads(hub(env, "reports", "overview", "--json"))
    assert set(overview["counts"]) == {"realtime_failures", "cross_province_failures", "reconciliation_diff_days",
                                       "recollections", "file_failures"}
    hub(env, "reports", "rules", "add", "FILES-1", "--name", "a file failed", "--metric", "file_failures",
        "--threshold", "1")
    hub(env, "reports", "rules", "edit", "FILES-1", "--threshold", "3")
    rules = json.loads(hub(env, "reports", "rules", "list", "--json"))
    assert [(r["id"], r["threshold"]) for r in rules["items"]] == [("FILES-1", 3)]
    figures = tmp_path / "RECON_20260301.csv"
    figures.write_text("product,crmOrderId\ninternet_line,CRM-404\n", encoding="utf-8")
    out = json.loads(hub(env, "reports", "reconcile", "2026-03-01", str(figures), "--json", code=1))
    assert out["status"] == "differences" and out["products"][0]["unknown_here_orders"] == ["CRM-404"]
    alerts = json.loads(hub(env, "reports", "alerts", "--json"))
    assert [a["kind"] for a in alerts["items"]] == ["reconciliation_diff"]
    hub(env, "reports", "note", alerts["items"][0]["id"], "asked the group", "--resolve")
    assert "succeeded" in hub(env, "reports", "regenerate", "2026-03-02", "--report", "video_network")
