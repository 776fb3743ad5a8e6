"""Daily and monthly report files (issue 16 item 2; format in docs/reporting.md).

The documents give no format (C.6), so ours: UTF-8 CSV (no BOM, ``\\r\\n`` rows, RFC 4180 quoting)
with a header row of the report's field keys; one row per order of the report's products created
in the period (the report's time zone), oldest first. Files are named
``{prefix}_{D|M}_{yyyymmdd|yyyymm}_{seq:03d}.csv`` — ``seq`` from 001, a new file every
``max_rows`` rows — and the period ends with ``{prefix}_{D|M}_{key}.manifest.json``: every file's
name, record count, bytes and SHA-256, and the total. The manifest is written last: a reader that
sees it sees complete files.

Streamed: a MongoDB cursor read in batches; each batch is rendered and hashed on a thread
(CSV formatting of thousands of rows is CPU) and written to the SFTP file as it goes, so memory
holds one batch, never the file. Published like the SFTP sink (connectors/sftp/sink.py): every
file is uploaded as ``name.part`` and renamed with ``posix_rename`` after the job's fence (a
holder whose lease was taken over publishes nothing). Regenerating a period writes the same names
again (rows in a stable order), replaces them, and removes parts a previous generation had and
this one has not: never a second copy.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from motor.motor_asyncio import AsyncIOMotorDatabase
from prometheus_client import Counter
from pymongo import ASCENDING
from pymongo.errors import AutoReconnect

from app.jobs.lease import StaleLease
from app.reports.definitions import Report, projection, values
from connectors.sftp.client import SftpSession
from flows.documents import ORDERS  # declares the orders' indexes (by_created) wherever this runs
from hub.settings import Settings

FILES = "report_files"
BATCH = 2000
FILE_REPORTS = Counter("hub_report_files_total", "Report file generations by report, period and result",
                       ["report", "period", "result"])


@dataclass
class Part:
    name: str
    records: int = 0
    bytes: int = 0
    sha: Any = field(default_factory=hashlib.sha256)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "records": self.records, "bytes": self.bytes, "sha256": self.sha.hexdigest()}


def period_range(period: str, key: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``daily`` ``2026-04-10`` / ``monthly`` ``2026-04`` → [start, end) as UTC datetimes."""
    if period == "daily":
        day = date.fromisoformat(key)
        start = datetime(day.year, day.month, day.day, tzinfo=zone)
        end = start + timedelta(days=1)
    else:
        year, month = (int(x) for x in key.split("-"))
        start = datetime(year, month, 1, tzinfo=zone)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def previous_period(period: str, at: datetime, zone: ZoneInfo) -> str:
    """The period a run at ``at`` reports on: the day before (daily), the month before (monthly)."""
    local = at.astimezone(zone)
    if period == "daily":
        return (local.date() - timedelta(days=1)).isoformat()
    first = local.date().replace(day=1) - timedelta(days=1)
    return f"{first:%Y-%m}"


def file_names(report: Report, period: str, key: str) -> tuple[str, str]:
    """(data file pattern with ``{seq}``, manifest name)."""
    assert report.definition.files is not None
    compact = key.replace("-", "")
    base = f"{report.definition.files.prefix}_{'D' if period == 'daily' else 'M'}_{compact}"
    return base + "_{seq:03d}.csv", base + ".manifest.json"


def directory(report: Report, period: str, key: str) -> str:
    assert report.transport is not None
    compact = key.replace("-", "")
    return report.transport.dir.format(partner=report.partner, period=period, yyyy=compact[:4], mm=compact[4:6],
                                       dd=compact[6:8])


def cell(value: Any, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone).isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return str(value)


def render(report: Report, docs: list[dict[str, Any]], zone: ZoneInfo, header: bool) -> bytes:
    """CSV rows of ``docs`` (and the header first when ``header``). Pure CPU: run on a thread."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if header:
        w.writerow([f.key for f in report.file_fields])
    for doc in docs:
        w.writerow([cell(v, zone) for v in values(report, doc).values()])
    return buf.getvalue().encode("utf-8")


def _hashed(part: Part, data: bytes) -> bytes:
    part.sha.update(data)
    return data


def _rendered(part: Part, report: Report, docs: list[dict[str, Any]], zone: ZoneInfo) -> bytes:
    return _hashed(part, render(report, docs, zone, False))


RESUMES = 5  # times a period's cursor broken by its connection is reopened where it stopped
log = logging.getLogger(__name__)


async def period_orders(db: AsyncIOMotorDatabase[Any], query: dict[str, Any], fields: dict[str, int], *,
                        resumes: int = RESUMES, pause_s: float = 1.0) -> AsyncIterator[dict[str, Any]]:
    """The orders of ``query`` (a ``created_at`` range) in ``created_at`` order, the by_created index
    walked forward, reopened after a broken connection from where it stopped.

    Why: a day of 1,000,000 orders is one cursor for minutes, and a connection error in the middle
    (a replica-set failover; the client's monitor giving up on a busy server, which cancels every
    operation in flight) lost the whole generation — ``python -m bench.daily_file --orders 1000000``
    died twice at load 9 with ``_OperationCancelled`` after the embedded server missed heartbeats for
    15 s. Reopened at the last ``created_at`` seen, skipping the ids already given at that instant:
    no order twice, none left out, the same order as one unbroken cursor. ``fields`` must keep
    ``created_at``."""
    last: datetime | None = None
    given_at_last: set[Any] = set()
    broken = 0
    while True:
        q = query if last is None else {**query, "created_at": {**query["created_at"], "$gte": last}}
        cursor = db[ORDERS].find(q, fields, batch_size=BATCH).sort("created_at", ASCENDING).hint("by_created")
        try:
            async for doc in cursor:
                at = doc["created_at"]
                if at == last:
                    if doc["_id"] in given_at_last:
                        continue
                else:
                    last, given_at_last = at, set()
                given_at_last.add(doc["_id"])
                yield doc
            return
        except AutoReconnect as exc:
            broken += 1
            if broken > resumes:
                raise
            log.warning("report cursor broken (%s: %s); reopened from %s (%d of %d)", type(exc).__name__, exc,
                        last, broken, resumes)
            await asyncio.sleep(pause_s * broken)


async def generate(db: AsyncIOMotorDatabase[Any], settings: Settings, report: Report, period: str, key: str,
                   *, fence: Callable[[], Awaitable[None]], run_id: str | None = None) -> dict[str, Any]:
    """Write ``report``'s file(s) for one period to its SFTP drop; returns the manifest."""
    transport = report.transport
    assert transport is not None and report.definition.files is not None
    zone = ZoneInfo(transport.timezone)
    start, end = period_range(period, key, zone)
    pattern, manifest_name = file_names(report, period, key)
    folder = directory(report, period, key)
    session = SftpSession(transport.connection, settings)
    query = {"product": {"$in": report.definition.products}, "created_at": {"$gte": start, "$lt": end}}
    # the by_created index (flows/documents.py) walked forward: ties in index order, the same every run,
    # and no in-memory sort of a day's orders
    cursor = period_orders(db, query, projection([report], also=["created_at"]))
    parts: list[Part] = []
    try:
        sftp = await session.client()
        remote_dir = session.path(folder)
        await sftp.makedirs(remote_dir, exist_ok=True)
        handle: Any = None

        async def new_part() -> Any:
            part = Part(pattern.format(seq=len(parts) + 1))
            parts.append(part)
            fh = await sftp.open(posixpath.join(remote_dir, part.name + ".part"), "wb")
            data = await asyncio.to_thread(lambda: _hashed(part, render(report, [], zone, True)))
            await fh.write(data)
            part.bytes += len(data)
            return fh

        handle = await new_part()
        batch: list[dict[str, Any]] = []

        async def flush() -> None:
            nonlocal handle, batch
            while batch:
                part = parts[-1]
                room = transport.max_rows - part.records
                if room <= 0:
                    await handle.close()
                    handle = await new_part()
                    continue
                take, batch = batch[:room], batch[room:]
                data = await asyncio.to_thread(_rendered, part, report, take, zone)
                await handle.write(data)
                part.records += len(take)
                part.bytes += len(data)

        async for doc in cursor:
            batch.append(doc)
            if len(batch) >= BATCH:
                await flush()
        await flush()
        await handle.close()
        manifest = {"report": report.name, "title": report.definition.title, "partner": report.partner,
                    "period": period, "key": key, "timezone": transport.timezone,
                    "from": start.isoformat(), "to": end.isoformat(),
                    "columns": [{"key": f.key, "label": f.label} for f in report.file_fields],
                    "files": [p.summary() for p in parts], "records": sum(p.records for p in parts)}
        body = (json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode()
        async with sftp.open(posixpath.join(remote_dir, manifest_name + ".part"), "wb") as fh:
            await fh.write(body)
        await fence()  # a holder whose lease was taken over stops here: its .part files are overwritten
        for p in parts:
            await sftp.posix_rename(posixpath.join(remote_dir, p.name + ".part"), posixpath.join(remote_dir, p.name))
        await sftp.posix_rename(posixpath.join(remote_dir, manifest_name + ".part"),
                                posixpath.join(remote_dir, manifest_name))
        rid = f"{report.name}:{period}:{key}"
        before = await db[FILES].find_one({"_id": rid}) or {}
        mine = {p.name for p in parts}
        for old in before.get("files") or []:
            if old["name"] not in mine:  # this period had more parts last time
                try:
                    await sftp.remove(posixpath.join(remote_dir, old["name"]))
                except OSError:
                    pass
        now = datetime.now(UTC)
        await db[FILES].update_one({"_id": rid}, {
            "$set": {"report": report.name, "period": period, "key": key, "dir": folder, "manifest": manifest_name,
                     "files": manifest["files"], "records": manifest["records"], "status": "delivered",
                     "generated_at": now, "run_id": run_id, "error": None},
            "$inc": {"generations": 1}, "$setOnInsert": {"first_generated_at": now}}, upsert=True)
        FILE_REPORTS.labels(report.name, period, "delivered").inc()
        return manifest
    except StaleLease:
        raise  # the new holder writes this period; recording a failure here would overwrite its record
    except Exception as exc:
        FILE_REPORTS.labels(report.name, period, "failed").inc()
        await db[FILES].update_one({"_id": f"{report.name}:{period}:{key}"}, {
            "$set": {"report": report.name, "period": period, "key": key, "status": "failed",
                     "error": f"{type(exc).__name__}: {exc}"[:2000], "failed_at": datetime.now(UTC)},
            "$inc": {"failures": 1}}, upsert=True)
        raise
    finally:
        await session.close()
