"""Report definitions (app/reports/definitions.py): every product C.6 lists has one, a bad file is
refused with file:line: key like a blueprint, and a report's values come from the order and the event."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.reports.definitions import FieldDef, load_reports, projection, values
from app.reports.files import file_names, period_range, previous_period, render
from app.reports.realtime import stage_events
from hub.errors import ConfigError
from hub.partners import load_partners

ROOT = Path(__file__).resolve().parents[2]
C6 = {f"C.6.{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19)}


def test_every_product_c6_lists_has_a_definition_and_the_files_are_the_daily_monthly_ones() -> None:
    reports = load_reports(ROOT / "config", load_partners(ROOT / "config"))
    assert {r.definition.catalogue for r in reports.by_name.values()} == C6
    assert {r.name for r in reports.files_for("daily")} == {r.name for r in reports.files_for("monthly")} == {
        "self_use_transmission", "e_enterprise_networking", "video_network"}  # C.6 .3, .13, .19
    line = reports.by_name["internet_line"]
    assert [f.label for f in line.definition.fields][:2] == ["自用业务标识", "建设类型"]
    assert line.fields[0].key == "hubOrderId" and reports.by_name["srv6_vpn"].definition.cross_province


def test_a_bad_reports_file_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    path = tmp_path / "reports" / "x.yaml"
    path.write_text("partner: nobody\nreports:\n  - name: a\n    title: A\n    products: [p]\n    fields:\n"
                    "      - {key: crm, path: external_order_id}\n      - {key: crm, value: x}\n"
                    "      - {key: bad-key, value: y}\n    files: {periods: [daily], prefix: A}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_reports(tmp_path, load_partners(ROOT / "config"))
    assert any(p.startswith(f"{path}:9: reports[0].fields[2].key") for p in exc.value.problems), exc.value.problems
    path.write_text(path.read_text(encoding="utf-8").replace("      - {key: bad-key, value: y}\n", ""), "utf-8")
    with pytest.raises(ConfigError) as exc:
        load_reports(tmp_path, load_partners(ROOT / "config"))
    text = "\n".join(exc.value.problems)
    assert f"{path}:1: partner: unknown partner 'nobody'" in text
    assert f"{path}:8: reports[0].fields[1].key: 'crm' is already a field" in text
    assert f"{path}:9: reports[0].files: the file has no top-level `files:`" in text


def test_values_come_from_the_order_and_the_stage_event() -> None:
    rep = load_reports(ROOT / "config", load_partners(ROOT / "config")).by_name["internet_line"]
    at = datetime(2026, 4, 10, 2, tzinfo=UTC)
    doc = {"_id": "O1", "order_id": "O1", "external_order_id": "CRM-1", "product": "internet_line",
           "order": {"customer": {"name": "某公司"}, "extensions": {"build_type": "新建"}},
           "stages": [{"stage": "accept", "entered_at": at, "finished_at": None}]}
    ((key, event),) = stage_events(rep, doc)
    assert key == "internet_line:O1:0:accept:enter"
    got = values(rep, doc, event)
    assert (got["crmOrderId"], got["buildType"], got["stage"], got["stageEvent"], got["selfUse"]) == (
        "CRM-1", "新建", "accept", "enter", "0")
    assert "stage" not in values(rep, doc)  # a file row has no stage event



def test_the_projection_reads_what_the_field_paths_name_and_no_more() -> None:
    """What the daily file and the real-time sweep read of an order: each path down to its first list
    index, a path under another one left out (MongoDB refuses both), never the stage event."""
    rep = load_reports(ROOT / "config", load_partners(ROOT / "config")).by_name["internet_line"]
    extra = FieldDef(key="city", label="城市", path="order.addresses.0.city")
    got = projection([dataclasses.replace(rep, fields=(*rep.fields, extra))], also=["stages", "order.addresses"])
    assert got["state.data.resource_status"] == got["order.customer.name"] == got["stages"] == 1
    assert "order.addresses" in got and not [k for k in got if k.startswith(("order.addresses.", "event"))]
    assert "state" not in got and "order" not in got  # not the whole flow state, nor the whole order

def test_periods_names_and_csv_quoting() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Shanghai")
    assert period_range("monthly", "2026-12", zone)[1].isoformat() == "2026-12-31T16:00:00+00:00"
    assert previous_period("monthly", datetime(2026, 1, 1, 2, 10, tzinfo=zone), zone) == "2025-12"
    assert previous_period("daily", datetime(2026, 4, 11, 0, 30, tzinfo=zone), zone) == "2026-04-10"
    rep = load_reports(ROOT / "config", load_partners(ROOT / "config")).by_name["self_use_transmission"]
    assert file_names(rep, "monthly", "2026-04") == ("ZYCSZX_M_202604_{seq:03d}.csv", "ZYCSZX_M_202604.manifest.json")
    row = render(rep, [{"_id": "O1", "order_id": "O1", "order": {"customer": {"name": 'a,"b"\n'}}}], zone, False)
    assert b'"a,""b""\n"' in row and row.endswith(b"\r\n")
