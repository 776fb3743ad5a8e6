"""Wireless parameter tasks (CATALOGUE P36.1/P36.2), the pure parts of the bulk path: a task and a REST
batch are checked field by field with the file's column names, and P36.2 judges the alarms on the pushed
cells by order type and whether service is affected (config/tasks/wireless.yaml's rules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.tasks.anomaly import judge, verdict
from flows.tasks.intake import parse_batch
from flows.tasks.model import WirelessTaskSettings, load_settings, parse_task
from hub.errors import ConfigError, ValidationFailed
from hub.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def settings() -> WirelessTaskSettings:
    found = load_settings(PROJECT_ROOT / "config")
    assert found is not None
    return found


def task(i: int = 1, **kw: str) -> dict[str, str]:
    return {"task_id": f"T{i}", "order_no": "WO-1", "order_type": "optimisation", "ne": "gNB-HZ-1",
            "cell": f"CELL-{i}", "parameter": "pMax", "value": "23", **kw}


def test_the_shipped_settings_name_one_dedicated_account_and_the_nms_partner(settings: WirelessTaskSettings) -> None:
    assert settings.account == "hub-aran-bulk" and settings.nms_partner == "wireless_nms"
    assert settings.sftp is not None and settings.sftp.partner == "aran_workbench"


def test_a_file_row_is_read_through_the_column_map(settings: WirelessTaskSettings) -> None:
    row = {"TASK_ID": " T9 ", "ORDER_NO": "WO-9", "ORDER_TYPE": "cutover", "NE": "gNB-1", "CELL": "C-1",
           "PARAM": "qRxLevMin", "VALUE": "-120", "EXTRA": "ignored"}
    assert parse_task(row, settings) == {"task_id": "T9", "order_no": "WO-9", "order_type": "cutover",
                                         "ne": "gNB-1", "cell": "C-1", "parameter": "qRxLevMin", "value": "-120"}


def test_a_bad_task_names_every_field(settings: WirelessTaskSettings) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_task({"task_id": "T1", "order_type": "party", "ne": "x" * 200}, settings, "tasks[3].")
    fields = {e["field"]: e["message"] for e in err.value.errors}
    assert fields["tasks[3].cell"] == "required" and fields["tasks[3].parameter"] == "required"
    assert "longer than" in fields["tasks[3].ne"] and "'party' is not one of" in fields["tasks[3].order_type"]


def test_a_batch_refuses_duplicate_task_ids_and_lists_positions(settings: WirelessTaskSettings) -> None:
    body = {"batch_id": "B1", "tasks": [task(1), task(2), task(1), {"task_id": "T4"}]}
    with pytest.raises(ValidationFailed) as err:
        parse_batch(json.dumps(body).encode(), settings)
    fields = [e["field"] for e in err.value.errors]
    assert "tasks[2].task_id" in fields and "tasks[3].cell" in fields
    assert not any(f.startswith("tasks[0]") for f in fields)


def test_a_batch_needs_an_id_and_tasks(settings: WirelessTaskSettings) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_batch(b'{"tasks": []}', settings)
    assert {e["field"] for e in err.value.errors} == {"batch_id", "tasks"}
    with pytest.raises(ValidationFailed):
        parse_batch(b"[1, 2]", settings)
    batch_id, tasks = parse_batch(json.dumps({"batch_id": "B2", "tasks": [task(1)]}).encode(), settings)
    assert batch_id == "B2" and tasks == [task(1)]


@pytest.mark.parametrize(("order_type", "affecting", "expected"), [
    ("emergency", True, "critical"), ("cutover", True, "critical"), ("optimisation", True, "major"),
    ("cutover", False, "minor"), ("new_site", False, "minor"), ("optimisation", False, "ignore"),
])
def test_p36_2_judges_by_order_type_and_service_impact(settings: WirelessTaskSettings, order_type: str,
                                                         affecting: bool, expected: str) -> None:
    assert verdict(settings.anomaly.rules, order_type, affecting) == expected


def test_only_alarms_on_cells_the_chunk_pushed_are_anomalies(settings: WirelessTaskSettings) -> None:
    tasks = [task(1, order_type="emergency"), task(2), task(3, cell="CELL-1", task_id="T3")]
    alarms: list[dict[str, Any]] = [{"cell": "CELL-1", "alarm": "小区退服", "service_affecting": True},
              {"cell": "CELL-2", "alarm": "驻波比告警", "service_affecting": "false"},
              {"cell": "CELL-99", "alarm": "not ours", "service_affecting": True}]
    found = judge(settings.anomaly.rules, tasks, alarms)
    assert [(a["task_id"], a["verdict"]) for a in found] == [("T1", "critical"), ("T3", "major")]
    assert found[0]["alarm"] == "小区退服" and found[0]["order_no"] == "WO-1"


def test_the_settings_file_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "wireless.yaml").write_text(
        "account: a\norder_types: [x]\nchunk_size: 0\nanomaly: {rules: [{verdict: ignore}]}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path)
    assert any("wireless.yaml:3: chunk_size" in p for p in err.value.problems), err.value.problems
