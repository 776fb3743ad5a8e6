"""Daily / monthly report files (app/reports/files.py) against real MongoDB and the embedded OpenSSH:
the files parsed back match their manifest and the orders of the period; regenerating a day gives the
same names and bytes and removes parts it no longer has; a worker frozen before publishing loses its
lease, the retry publishes, the stale holder publishes nothing — never a duplicate file."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorDatabase

from app.jobs.config import JobConfig
from app.jobs.history import History
from app.jobs.registry import JobContext, kinds
from app.jobs.scheduler import Scheduler
from app.reports.definitions import Report, load_reports
from app.reports.files import generate
from hub.db import connect, ensure_indexes
from hub.embedded import EmbeddedSftp
from hub.partners import load_partners
from hub.settings import Settings
from tests.integration.test_jobs import Clock, tick_all
from tests.support import eventually
from tests.unit.catalogue_resource_status_test import played_state

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CST = timedelta(hours=8)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncIOMotorDatabase[Any]]:
    client = connect(settings)
    database = client[settings.mongo_db]
    await ensure_indexes(database)
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        client.close()


def order(n: int, product: str, created: datetime) -> dict[str, Any]:
    return {"_id": f"O{n:05d}", "order_id": f"O{n:05d}", "product": product, "scenario": "open",
            "external_order_id": f"CRM-{n}", "status": "in_flight", "current_stage": "design",
            "order": {"customer": {"name": f"客户{n}, \"甲\""}, "extensions": {"a_end_build_type": "新建"}},
            "created_at": created}


async def seed(db: AsyncIOMotorDatabase[Any], count: int, *, start: int = 0) -> None:
    day = datetime(2026, 4, 10, tzinfo=UTC) - CST  # 2026-04-10 00:00 China time
    docs = [order(start + i, "self_use_transmission", day + timedelta(minutes=i)) for i in range(count)]
    docs += [order(start + 900 + i, "internet_line", day + timedelta(minutes=i)) for i in range(2)]  # other product
    docs += [order(start + 950, "self_use_transmission", day - timedelta(seconds=1)),  # the day before
             order(start + 951, "self_use_transmission", day + timedelta(days=1))]  # the day after
    await db["orders"].insert_many(docs)


def report(max_rows: int) -> Report:
    rep = load_reports(ROOT / "config", load_partners(ROOT / "config")).by_name["self_use_transmission"]
    assert rep.transport is not None
    return dataclasses.replace(rep, transport=rep.transport.model_copy(update={
        "max_rows": max_rows, "dir": f"/reports/t{uuid.uuid4().hex[:6]}/{{period}}"}))


def folder(settings: Settings, rep: Report) -> Path:
    assert rep.transport is not None
    return EmbeddedSftp(settings).local_path(rep.transport.dir.format(period="daily"))


def read_back(where: Path, manifest_name: str) -> tuple[dict[str, Any], list[list[str]]]:
    """Parse every file the manifest lists; check its count, bytes and SHA-256 against the manifest."""
    manifest = json.loads((where / manifest_name).read_text(encoding="utf-8"))
    rows: list[list[str]] = []
    for f in manifest["files"]:
        data = (where / f["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
        parsed = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        assert parsed[0] == [c["key"] for c in manifest["columns"]]
        assert len(parsed) - 1 == f["records"]
        rows += parsed[1:]
    assert manifest["records"] == len(rows)
    return manifest, rows


async def nothing() -> None:
    return None


async def test_files_parse_back_to_their_manifest_and_regenerating_is_idempotent(
        settings: Settings, db: AsyncIOMotorDatabase[Any]) -> None:
    await seed(db, 7)
    rep = report(max_rows=3)
    manifest = await generate(db, settings, rep, "daily", "2026-04-10", fence=nothing)
    where = folder(settings, rep)
    names = sorted(p.name for p in where.iterdir())
    assert names == ["ZYCSZX_D_20260410.manifest.json", "ZYCSZX_D_20260410_001.csv", "ZYCSZX_D_20260410_002.csv",
                     "ZYCSZX_D_20260410_003.csv"]
    again, rows = read_back(where, "ZYCSZX_D_20260410.manifest.json")
    assert again == manifest and [f["records"] for f in manifest["files"]] == [3, 3, 1]
    keys = [c["key"] for c in manifest["columns"]]
    assert [r[keys.index("crmOrderId")] for r in rows] == [f"CRM-{i}" for i in range(7)]  # the day's, in order
    assert rows[0][keys.index("customerName")] == '客户0, "甲"' and rows[0][keys.index("selfUse")] == "1"
    assert rows[0][keys.index("createdAt")] == "2026-04-10T00:00:00+08:00"
    assert "stage" not in keys  # the stage event's fields are only in real-time reports

    await generate(db, settings, rep, "daily", "2026-04-10", fence=nothing)  # regenerated: same names, same bytes
    assert sorted(p.name for p in where.iterdir()) == names
    assert read_back(where, "ZYCSZX_D_20260410.manifest.json")[0] == manifest

    await db["orders"].delete_many({"_id": {"$in": ["O00005", "O00006"]}})  # now 5 rows: two files
    await generate(db, settings, rep, "daily", "2026-04-10", fence=nothing)
    assert sorted(p.name for p in where.iterdir()) == names[:3]
    assert read_back(where, "ZYCSZX_D_20260410.manifest.json")[0]["records"] == 5
    record = await db["report_files"].find_one({"_id": "self_use_transmission:daily:2026-04-10"})
    assert record is not None and record["generations"] == 3 and record["status"] == "delivered"



async def test_a_row_says_whether_the_resource_center_had_resources(
        settings: Settings, db: AsyncIOMotorDatabase[Any]) -> None:
    """资源满足情况 in a daily file: the flow state's ``resource_status`` (as the transmission line's P04.1
    blueprint saves 资管's design reply; 自用传输专线 has no blueprint of its own yet), empty without one."""
    day = datetime(2026, 4, 10, tzinfo=UTC) - CST
    played = [await asyncio.to_thread(played_state, "p04-1-transmission-line-open", answers) for answers in (
        {}, {"resource.design_request": {"needs_construction": False}})]  # CPU: off the loop
    await db["orders"].insert_many([{**order(i, "self_use_transmission", day + timedelta(minutes=i)), "state": s}
                                    for i, s in enumerate(played)]
                                   + [order(2, "self_use_transmission", day + timedelta(minutes=2))])
    rep = report(max_rows=10)
    await generate(db, settings, rep, "daily", "2026-04-10", fence=nothing)
    manifest, rows = read_back(folder(settings, rep), "ZYCSZX_D_20260410.manifest.json")
    keys = [c["key"] for c in manifest["columns"]]
    assert [r[keys.index("resourceStatus")] for r in rows] == ["资源不满足，需建设", "资源满足", ""]

async def test_a_frozen_worker_publishes_nothing_and_the_retry_leaves_one_copy(
        settings: Settings, db: AsyncIOMotorDatabase[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    await seed(db, 5)
    rep = report(max_rows=2)
    wake = asyncio.Event()
    real = kinds()["report_file"]
    from app.reports import jobs as report_jobs

    async def frozen_before_publishing(ctx: JobContext) -> dict[str, Any]:
        fence = ctx.fence

        async def late_fence() -> None:
            await wake.wait()  # every part is written (.part), the manifest too: frozen here
            await fence()

        ctx.fence = late_fence  # type: ignore[method-assign]  # the frozen worker's fence waits first
        return await real(ctx)

    def load(*_: Any) -> Any:  # the shipped definitions, with this test's folder and file size
        reports = load_reports(ROOT / "config", load_partners(ROOT / "config"))
        reports.by_name = {rep.name: rep}
        return reports

    job = JobConfig.model_validate({"name": "daily-files", "kind": "report_file", "schedule": "10 1 * * *",
                                    "timezone": "Asia/Shanghai", "lease_s": 30, "params": {"period": "daily"}})
    clock = Clock(datetime(2026, 4, 11, 1, 0, tzinfo=UTC) - CST)
    monkeypatch.setattr(report_jobs, "load_reports", load)
    a = Scheduler(settings, {}, db, {job.name: job}, {"report_file": frozen_before_publishing}, worker="A",
                  clock=clock)
    b = Scheduler(settings, {}, db, {job.name: job}, {"report_file": real}, worker="B", clock=clock)
    await tick_all(a, b)
    clock.advance(minutes=11)
    started = await a.tick()
    where = folder(settings, rep)
    await eventually(lambda: asyncio.to_thread(lambda: (where / "ZYCSZX_D_20260410.manifest.json.part").exists()))
    assert sorted(p.name for p in where.iterdir() if not p.name.endswith(".part")) == []  # nothing published
    clock.advance(seconds=31)  # A's lease lapsed
    await tick_all(b)
    wake.set()
    await asyncio.gather(*started)
    names = sorted(p.name for p in where.iterdir())
    assert names == ["ZYCSZX_D_20260410.manifest.json", "ZYCSZX_D_20260410_001.csv", "ZYCSZX_D_20260410_002.csv",
                     "ZYCSZX_D_20260410_003.csv"]
    assert read_back(where, "ZYCSZX_D_20260410.manifest.json")[0]["records"] == 5
    run = await History(db).get("daily-files@2026-04-11T01:10:00+08:00")
    assert run is not None and run["status"] == "succeeded" and run["attempts"] == 2 and run["worker"] == "B"
    assert run["counts"] == {"period": "2026-04-10", "reports": 1, "files": 3, "records": 5}
