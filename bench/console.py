"""The operator console's server time and page weight with 100,000 orders in MongoDB (issue 15).

    python -m bench.console [--orders 100000] [--requests 60] [--url http://127.0.0.1:PORT]

What runs: private tansu + SecantusDB (bench._common.private_infra); the hub's web app (the same
``build_web_app`` as ``hub run``, without the Faust worker: nothing here needs the engine) in a
subprocess; this process seeds MongoDB and is the browser. Orders are seeded straight into
MongoDB in the shape the v2 engine writes (a ten-stage internet-line timeline, the canonical order,
engine state), after the hub created its indexes: 88 % completed, 8 % waiting at a stage, 2 % held
by a dead-lettered call (with its letter), 2 % overdue; plus 3 calls per order over the last 24 h
for the newest 20,000 orders (the overview's failure-rate chart) and their dead letters.

Reported per page, ``--requests`` sequential requests after 3 warm-up ones: the server's own time
(``Server-Timing: app;dur=``, set by the console around each handler) p50/p95, the wall time seen by
the client, and the page weight (HTML bytes; the stylesheet and script once, cached for an hour).
Baselines measured in the same run against the same database: the admin API's JSON for the same
order and the same list (``/admin/v1/orders…``), which run the same service-layer queries — the
ratio is what rendering HTML adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import free_port, private_infra, wait_http

OPERATOR = "dev-operator-token-0001"
STAGES = [("accept", "业务受理", "auto"), ("design", "方案设计", "call"), ("construction", "工程施工", "call"),
          ("resource_entry", "资源录入", "call"), ("resource_config", "资源配置", "call"),
          ("activation", "配置激活", "call"), ("verification", "业务验证", "user"), ("archive", "工单归档", "call"),
          ("close_report", "工单报结", "call"), ("done", "done", "end")]


def digest() -> str:
    from flows.graph.library import load_library
    from hub.settings import PROJECT_ROOT

    bp = load_library(PROJECT_ROOT / "config").get("internet_line", "open")
    assert bp is not None
    return bp.digest()


def order_doc(i: int, count: int, now: datetime, pinned: str, rnd: random.Random) -> dict[str, Any]:
    created = now - timedelta(seconds=(count - i) * 30)  # one every 30 s: 100,000 span 35 days
    roll = rnd.random()
    status = "completed" if roll < 0.88 else "waiting"
    upto = len(STAGES) if status == "completed" else rnd.randrange(1, len(STAGES) - 1)
    trail: list[dict[str, Any]] = []
    at = created.timestamp()
    for n, (node, _, _) in enumerate(STAGES[:upto]):
        left = at + rnd.uniform(0.1, 600) if (status == "completed" or n < upto - 1) else None
        trail.append({"node": node, "at": at, "left_at": left, "outcome": "left" if left else None})
        at = left or at
    stages = [{"stage": t["node"], "title": STAGES[k][1], "kind": STAGES[k][2],
               "entered_at": datetime.fromtimestamp(t["at"], UTC),
               "finished_at": datetime.fromtimestamp(t["left_at"], UTC) if t["left_at"] else None,
               "outcome": t["outcome"], "duration_ms": round((t["left_at"] - t["at"]) * 1000, 1) if t["left_at"]
               else None} for k, t in enumerate(trail)]
    current = None if status == "completed" else trail[-1]["node"]
    order_id = f"ord-bench-{i:06d}"
    blocked = status == "waiting" and roll > 0.98
    overdue = status == "waiting" and 0.96 < roll <= 0.98
    data = {"external_order_id": f"E-{i:06d}", "product": "internet_line", "bandwidth_mbps": 100,
            "customer": {"name": f"杭州客户{i}有限公司", "contact_phone": f"138{i:08d}"},
            "addresses": [{"city": "杭州", "detail": f"文三路{i}号"}], "access_type": "PON"}
    return {
        "_id": order_id, "order_id": order_id, "partner": "esop", "external_order_id": f"E-{i:06d}",
        "product": "internet_line", "scenario": "open", "order": data, "blueprint": "p02-1-internet-line-open",
        "digest": pinned, "engine": 2, "status": status, "current_stage": current,
        "current_nodes": [current] if current else [], "stages": stages,
        "state": {"status": "completed" if status == "completed" else "running", "data": data, "trail": trail,
                  "tokens": {} if status == "completed" else {
                      "t1": {"id": "t1", "node": current, "phase": "active", "since": trail[-1]["at"], "gates": {},
                             "timers": {}, "wait": {}}}},
        "outbox": [], "open_calls": {}, "timers": {}, "applied": [], "replies": [],
        "blocked_reason": f"{current} at resource failed: HTTP 503; replay dead letter dl-bench-{i} to continue"
        if blocked else None,
        "waiting_for": f"{current} (call)" if status == "waiting" else None,
        "sla_deadline": (now - timedelta(hours=1)) if overdue else (now + timedelta(days=2)) if status == "waiting"
        else None,
        "created_at": created, "updated_at": created + timedelta(minutes=30),
        "completed_at": created + timedelta(hours=1) if status == "completed" else None,
    }


def call_docs(i: int, now: datetime, rnd: random.Random) -> list[dict[str, Any]]:
    out = []
    for k, op in enumerate(("design_request", "resource_entry", "close_report")):
        started = now - timedelta(seconds=rnd.uniform(0, 86_400))
        failed = rnd.random() < 0.03
        out.append({"_id": f"c-{i}-{k}", "call_id": f"c-{i}-{k}", "order_id": f"ord-bench-{i:06d}",
                    "partner": "esop" if op == "close_report" else "resource", "operation": op,
                    "stage": op, "idempotency_key": f"k-{i}-{k}", "outcome": "dead_lettered" if failed else "ok",
                    "error": "HTTP 503" if failed else None, "attempts": [{"at": started, "outcome": "ok"}],
                    "duration_ms": rnd.uniform(20, 400), "started_at": started,
                    "finished_at": started + timedelta(milliseconds=300), "response": {"code": "0"},
                    "dead_letter_id": f"dl-bench-{i}-{k}" if failed else None})
    return out


def letter_doc(call: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {"_id": call["dead_letter_id"], "source_topic": f"{prefix}.out.{call['partner']}",
            "dlq_topic": f"{prefix}.out.{call['partner']}.dlq", "partner": call["partner"],
            "order_id": call["order_id"], "idempotency_key": call["idempotency_key"], "envelope": None,
            "error": "HTTP 503", "error_class": "RetriesExhausted", "attempts": [], "origin": {},
            "status": "dead", "replay_count": 0, "created_at": call["started_at"]}


def seed(mongo_url: str, db_name: str, prefix: str, count: int) -> float:
    from pymongo import MongoClient

    now, rnd, pinned = datetime.now(UTC), random.Random(7), digest()
    t0 = time.perf_counter()
    client: MongoClient[dict[str, Any]]
    with MongoClient(mongo_url, tz_aware=True) as client:
        db: Any = client[db_name]
        batch: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for i in range(count):
            batch.append(order_doc(i, count, now, pinned, rnd))
            if i >= count - 20_000:
                calls.extend(call_docs(i, now, rnd))
            if len(batch) == 1000:
                db.orders.insert_many(batch, ordered=False)
                batch = []
            if len(calls) >= 3000:
                db.calls.insert_many(calls, ordered=False)
                letters = [letter_doc(c, prefix) for c in calls if c["dead_letter_id"]]
                if letters:
                    db.dead_letters.insert_many(letters, ordered=False)
                calls = []
            if i and i % 20_000 == 0:
                print(f"  seeded {i} orders ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if batch:
            db.orders.insert_many(batch, ordered=False)
        if calls:
            db.calls.insert_many(calls, ordered=False)
        print(f"  orders {db.orders.estimated_document_count()}, calls {db.calls.estimated_document_count()}, "
              f"dead letters {db.dead_letters.estimated_document_count()}", file=sys.stderr)
    return time.perf_counter() - t0


SERVE = """
import asyncio, sys
from aiohttp import web
from app.runtime import Runtime
from app.web import build_web_app
from hub.settings import Settings
web.run_app(build_web_app(Runtime(Settings())), host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def pct(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, max(0, int(-(-len(data) * p // 100)) - 1))] if data else float("nan")


#: the pages the issue asks figures for get ``--requests`` each; the others a few (their weight is the point)
MAIN = ("overview", "orders list", "order page", "order page (newest)", "baseline: API orders list",
        "baseline: API order")


async def measure(base: str, paths: dict[str, str], requests: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base}/console/login", data={"token": OPERATOR, "next": "/console"},
                             allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        for name, path in paths.items():
            server, wall, size, first, snapshot, failed = [], [], 0, 0.0, "", 0
            for n in range((requests if name in MAIN else min(requests, 5)) + 3):
                t0 = time.perf_counter()
                async with http.get(f"{base}{path}", headers=headers if path.startswith("/admin") else {},
                                    allow_redirects=False) as r:
                    body = await r.read()
                    if r.status != 200:  # counted and shown: a page that times out is a result too
                        failed += 1
                        print(f"  {path}: {r.status} {body[:120]!r}", file=sys.stderr)
                    timing = re.search(r"dur=([\d.]+)", r.headers.get("Server-Timing", ""))
                t1 = time.perf_counter()
                if n == 0:
                    first = (t1 - t0) * 1000
                    found = re.search(rb'id="as-of">[^(]*\(([\d.]+) s\)', body)
                    snapshot = found.group(1).decode() if found else ""
                if n >= 3:
                    wall.append((t1 - t0) * 1000)
                    if timing:
                        server.append(float(timing.group(1)))
                    size = len(body)
            rows.append({"name": name, "path": path, "server": server, "wall": wall, "bytes": size, "first": first,
                         "snapshot": snapshot, "failed": failed})
    return rows


def pages(orders: int) -> dict[str, str]:
    some = f"ord-bench-{random.Random(11).randrange(orders):06d}"
    return {
        "overview": "/console",
        "orders list": "/console/orders",
        "order page": f"/console/orders/{some}",
        "order page (newest)": f"/console/orders/ord-bench-{orders - 1:06d}",
        "dead letters": "/console/dlq",
        "API calls": "/console/calls",
        "alerts": "/console/alerts",
        "flows": "/console/flows",
        "routes": "/console/routes",
        "history": "/console/history",
        "baseline: API orders list": "/admin/v1/orders",
        "baseline: API order": f"/admin/v1/orders/{some}",
    }


def report(rows: list[dict[str, Any]], orders: int, requests: int) -> None:
    root = Path(__file__).parents[1] / "app/console/static"
    css, js = len((root / "console.css").read_bytes()), len((root / "console.js").read_bytes())
    print(f"\nconsole with {orders:,} orders; {requests} sequential requests per main page, 5 for the others "
          f"(server = Server-Timing app;dur, wall = client; first = the first request, cold)")
    print(f"{'page':<30} {'server p50':>10} {'p95':>8} {'wall p50':>9} {'p95':>8} {'HTML bytes':>11} {'first':>9}")
    by = {r["name"]: r for r in rows}
    for r in rows:
        srv = f"{pct(r['server'], 50):10.1f} {pct(r['server'], 95):8.1f}" if r["server"] else f"{'-':>10} {'-':>8}"
        print(f"{r['name']:<30} {srv} {pct(r['wall'], 50):9.1f} {pct(r['wall'], 95):8.1f} {r['bytes']:11,} "
              f"{r['first']:9.1f}" + (f"   (snapshot computed in {r['snapshot']} s)" if r["snapshot"] else "")
              + (f"   {r['failed']} not 200" if r["failed"] else ""))
    print(f"static once (cached 1 h): console.css {css:,} B, console.js {js:,} B")
    for page, base_name in (("orders list", "baseline: API orders list"), ("order page", "baseline: API order")):
        if page not in by or base_name not in by or not by[base_name]["wall"]:
            continue
        ratio = pct(by[page]["wall"], 95) / pct(by[base_name]["wall"], 95)
        print(f"ratio wall p95 {page} / {base_name.removeprefix('baseline: ')}: {ratio:.2f}")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--url", help="measure a hub already serving a database this benchmark seeded (no seeding)")
    ap.add_argument("--skip", action="append", default=[], help="leave a page out (its name), e.g. a slow baseline")
    args = ap.parse_args()
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    if args.url:
        chosen = {k: v for k, v in pages(args.orders).items() if k not in args.skip}
        report(asyncio.run(measure(args.url, chosen, args.requests, headers)), args.orders, args.requests)
        return
    with private_infra() as env:
        port = free_port()
        hub_env = {**os.environ, **env, "HUB_HTTP_PORT": str(port), "HUB_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=hub_env)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120)
            time.sleep(2)  # the runtime creates the indexes at start: seed after, as a running hub sees it
            from hub.settings import Settings

            s = Settings()
            print(f"seeding {args.orders} orders into {s.mongo_db} …", file=sys.stderr)
            took = seed(s.mongo_uri, s.mongo_db, s.topic_prefix, args.orders)
            print(f"seeded in {took:.0f} s", file=sys.stderr)
            rows = asyncio.run(measure(f"http://127.0.0.1:{port}", pages(args.orders), args.requests, headers))
        finally:
            server.terminate()
            server.wait(20)
    report(rows, args.orders, args.requests)


if __name__ == "__main__":
    main()
