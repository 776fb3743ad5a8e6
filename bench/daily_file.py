"""Report files and real-time reports (issue 16): how long a daily file of N orders takes, how much
memory it holds, and how many real-time reports per second reach the simulator.

    python -m bench.daily_file --orders 1000000 --realtime-orders 3000

Private servers (SecantusDB, OpenSSH; app/infra/ephemeral.py). The orders are inserted first with
bulk writes (``insert_many`` of 10,000), then:

- **daily file**: app/reports/files.py ``generate`` for the day (CSV parts + manifest over SFTP).
  Baseline, in the same run: reading the same cursor (same filter, projection, sort, batch size)
  and doing nothing with the documents — the database's share; the ratio says what rendering,
  hashing and SFTP add. Peak RSS: the process's high-water mark reset (``/proc/self/clear_refs``)
  right before each measurement, so it is the generation's own peak, not the insertion's.
- **real-time**: RealtimeReporter sweeps over orders with two stages (three stage events each) to
  the simulator's 一编 (``/group/api/realtimeReport``), until every event is sent; baseline: the
  same number of bare aiohttp POSTs of the same bodies at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import monitoring
from pymongo.errors import PyMongoError

from app.reports.definitions import load_reports, projection
from app.reports.files import generate, period_orders, period_range
from app.reports.realtime import RealtimeReporter
from bench._common import free_port, private_infra
from hub.db import connect, ensure_indexes
from hub.partners import load_partners
from hub.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-04-10"


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def order(n: int, at: datetime, product: str, stages: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": f"B{n:08d}", "order_id": f"B{n:08d}", "product": product, "scenario": "open", "status": "completed",
        "external_order_id": f"CRM-{n}", "current_stage": "close",
        "order": {"customer": {"name": f"客户{n}有限公司"}, "extensions": {
            "subject": f"专线开通{n}", "product_instance_id": f"PI{n}", "a_end_build_type": "新建",
            "z_end_build_type": "利旧", "resource_status": "满足"}},
        "created_at": at, "updated_at": at}
    if stages:
        doc["stages"] = [{"stage": "accept", "title": "受理", "entered_at": at,
                          "finished_at": at + timedelta(seconds=1)},
                         {"stage": "design", "title": "方案设计", "entered_at": at + timedelta(seconds=1),
                          "finished_at": None}]
    return doc


async def insert(db: Any, n: int, product: str, start: datetime, step_ms: float, *, stages: bool = False,
                 base: int = 0) -> float:
    began = time.perf_counter()
    for i in range(0, n, 10_000):
        docs = [order(base + j, start + timedelta(milliseconds=j * step_ms), product, stages)
                for j in range(i, min(n, i + 10_000))]
        await db["orders"].insert_many(docs, ordered=False)
    return time.perf_counter() - began


async def daily(db: Any, settings: Any, n: int) -> None:
    partners = load_partners(ROOT / "config")
    report = load_reports(ROOT / "config", partners).by_name["self_use_transmission"]
    start, end = period_range("daily", DAY, __import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    step = (end - start).total_seconds() * 1000 / max(n, 1)
    took = await insert(db, n, "self_use_transmission", start, step)
    began = time.perf_counter()
    await ensure_indexes(db)  # after the bulk insert: one index build instead of an entry per insert
    print(f"inserted {n:,} orders in {took:.1f} s ({n / took:,.0f}/s), indexes built in "
          f"{time.perf_counter() - began:.1f} s", flush=True)

    reset_peak()
    rss0 = rss_mb()
    began = time.perf_counter()
    seen = 0
    q = {"product": {"$in": report.definition.products}, "created_at": {"$gte": start, "$lt": end}}
    fields = projection([report], also=["created_at"])  # what generate() reads
    async for _ in period_orders(db, q, fields):
        seen += 1
    base_s = time.perf_counter() - began
    base_peak = rss_mb("VmHWM")
    print(f"baseline (cursor only): {seen:,} documents in {base_s:.1f} s ({seen / base_s:,.0f}/s), "
          f"RSS {rss0:.0f} -> peak {base_peak:.0f} MB", flush=True)

    reset_peak()
    rss0 = rss_mb()

    async def fence() -> None:
        return None

    began = time.perf_counter()
    manifest = await generate(db, settings, report, "daily", DAY, fence=fence)
    gen_s = time.perf_counter() - began
    peak = rss_mb("VmHWM")
    size = sum(f["bytes"] for f in manifest["files"])
    print(f"daily file: {manifest['records']:,} records, {len(manifest['files'])} file(s), {size / 1e6:.1f} MB "
          f"in {gen_s:.1f} s ({manifest['records'] / gen_s:,.0f} records/s); RSS {rss0:.0f} -> peak {peak:.0f} MB "
          f"(+{peak - rss0:.0f} MB); ratio to the cursor alone {gen_s / base_s:.2f}", flush=True)


async def realtime(db: Any, settings: Any, n: int, concurrency: int) -> None:
    from simulators.server import serve

    port = free_port()
    runner, _ = await serve(ROOT / "config", "127.0.0.1", port)
    try:
        partners = load_partners(ROOT / "config")
        out = partners["group"].outbound
        assert out is not None
        out.config = {**out.config, "base_url": f"http://127.0.0.1:{port}/group"}
        reports = load_reports(ROOT / "config", partners)
        now = datetime.now(UTC)
        await insert(db, n, "internet_line", now - timedelta(minutes=30), 1.0, stages=True, base=50_000_000)
        reporter = RealtimeReporter(db, settings, partners, reports, concurrency=concurrency, batch=500)
        began = time.perf_counter()
        sent = failed = 0
        while True:
            counts = await reporter.sweep()
            sent += counts["sent"]
            failed += counts["failed"]
            if counts["orders"] < 500 and counts["sent"] == 0 and counts["failed"] == 0:
                break
        took = time.perf_counter() - began
        await reporter.close()
        print(f"real-time: {sent:,} reports sent ({failed} failed) for {n:,} orders in {took:.1f} s "
              f"({sent / took:,.0f} reports/s, concurrency {concurrency})", flush=True)

        bodies = [d["payload"] async for d in db["report_sends"].find({}, {"payload": 1}).limit(sent)]
        headers = {"X-Api-Key": "dev-hub-to-group-0001"}
        limit = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
            async def post(body: dict[str, Any]) -> None:
                async with limit, s.post(f"http://127.0.0.1:{port}/group/api/realtimeReport", json=body,
                                         headers=headers) as r:
                    await r.read()

            began = time.perf_counter()
            await asyncio.gather(*(post(b) for b in bodies))
            raw = time.perf_counter() - began
        print(f"baseline (bare POSTs): {len(bodies):,} in {raw:.1f} s ({len(bodies) / raw:,.0f}/s); "
              f"ratio {(sent / took) / (len(bodies) / raw):.2f}", flush=True)
    finally:
        await runner.cleanup()


class HeartbeatFailures(monitoring.ServerHeartbeatListener):
    """Says when the client's monitor gave up on the server: pymongo then clears the pool and
    cancels the operations in flight (``_OperationCancelled``) — what a busy embedded server does
    to a long report generation."""

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        print(f"{datetime.now(UTC):%H:%M:%S} heartbeat failed after {event.duration * 1000:.0f} ms: "
              f"{type(event.reply).__name__}: {event.reply}", flush=True)


async def amain(args: argparse.Namespace) -> None:
    monitoring.register(HeartbeatFailures())
    settings = load_settings()
    client = connect(settings)
    db = client[settings.mongo_db]
    try:
        if args.orders:
            await daily(db, settings, args.orders)
        if args.realtime_orders:
            await ensure_indexes(db)
            await realtime(db, settings, args.realtime_orders, args.concurrency)
    except Exception:
        # printed before the clean-up: pymongo raises its cancellations "from None", so a failing
        # drop below would hide the cause (two 1,000,000-order runs ended in a bare _OperationCancelled)
        traceback.print_exc()
        raise
    finally:
        try:
            await client.drop_database(settings.mongo_db)
        except PyMongoError as exc:  # the private server is deleted with its folder anyway
            print(f"clean-up: drop_database failed ({type(exc).__name__}: {exc})", flush=True)
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=1_000_000, help="orders in the day's file (0: skip)")
    ap.add_argument("--realtime-orders", type=int, default=3000, help="orders for real-time reports (0: skip)")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    with private_infra(sftp=True):
        os.environ.setdefault("HUB_MONGO_DB", "bench_daily_file")
        asyncio.run(amain(args))
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
