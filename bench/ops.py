"""The operations center with 100,000 open orders and 20 rules in MongoDB (issue 14 "Measure").

    HUB_MONGO_TIMEOUT_MS=120000 python -m bench.ops [--orders 100000] [--rules 20] [--queries 200]

(the long timeout: a loaded embedded SecantusDB misses the driver's 5 s heartbeat during a big scan,
the pool is reset and the cursor cancelled — it ended the first 100,000-order run; docs/operations.md)

What runs: private tansu + SecantusDB (bench._common.private_infra); this process seeds MongoDB
straight in the shape the v2 engine writes (engine tokens, the `_calls` log, open calls, a five-stage
timeline, the canonical order: about 3 KB per order) over 4 products x 6 stages, 10 % overdue,
10 % past 80 % of their SLA, 5 % with a dead-lettered call, 5 % held by a refused gated report; then
the 7 shipped default rules plus 13 scoped ones (product/stage thresholds) = 20 rules.

Reported: one evaluation cycle (the first raises every alert; the second is the steady state, where
nothing changes) — wall time, this process's CPU (read, facts, CEL) and the database's CPU; the
baseline measured in the same run is a bare scan of the same open orders with the same projection
and no evaluation (what reading alone costs), printed as a ratio. Then p50/p99 of the overview
query (the snapshot, what `GET /admin/v1/overview` runs), of a live overview (a full scan), and of
two drill-downs (stuck at one stage, overdue of one product). Each query path's index is printed
from the server's explain where it reports one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import private_infra

PRODUCTS = ("internet_line", "5g_lan", "transmission_line", "mpls_vpn")
STAGES = ("accept", "design", "construction", "resource_config", "activation", "verification")


def proc_cpu(pids: list[int]) -> float:
    """utime + stime of ``pids`` in seconds (/proc), 0 when unreadable."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def db_pids(home: Path) -> list[int]:
    out = []
    for pid_file in home.rglob("*.pid"):
        if "mongo" in pid_file.name:
            try:
                out.append(int(pid_file.read_text().strip()))
            except ValueError:
                pass
    return out


def make_order(i: int, now: float, rnd: random.Random) -> dict[str, Any]:
    oid = f"ord-ops-{i:06d}"
    product, stage = PRODUCTS[i % len(PRODUCTS)], STAGES[(i // len(PRODUCTS)) % len(STAGES)]
    since = now - min(rnd.expovariate(1 / (6 * 3600)), 20 * 86400)  # mean 6 h in the stage, a long tail
    kind = i % 20
    deadline = None
    if kind in (0, 1):  # overdue
        deadline = now - rnd.uniform(60, 86400)
    elif kind in (2, 3):  # past 80 % of its SLA
        deadline = now + (now - since) * 0.1
    elif kind < 12:
        deadline = now + rnd.uniform(3600, 10 * 86400)
    phase, gates = ("exit", {f"{oid}:9:report": {"index": 0, "ok": False, "error": "refused"}}) if kind == 4 \
        else ("active", {})
    open_calls: dict[str, Any] = {f"{oid}:7:call": {"type": "send_call", "partner": "resource", "operation": "design",
                                                    "sent_at": since + 5, "payload": {"orderId": oid, "x": "y" * 40}}}
    if kind == 5:
        open_calls[f"{oid}:7:call"]["dead_letter_id"] = f"dl-{oid}"

    def dt(x: float | None) -> datetime | None:
        return None if x is None else datetime.fromtimestamp(x, UTC)

    return {
        "_id": oid, "order_id": oid, "partner": "esop", "external_order_id": f"E-{i}", "product": product,
        "scenario": "open", "status": "waiting" if i % 3 else "in_flight", "current_stage": stage,
        "current_nodes": [stage], "waiting_for": f"{stage} (call)", "blocked_reason": "held" if kind == 5 else None,
        "sla_deadline": dt(deadline), "created_at": dt(since - 3600), "updated_at": dt(since), "engine": 2,
        "order": {"customer": {"name": "某某科技有限公司", "contact_phone": "13800001111"},
                  "addresses": [{"city": "杭州", "detail": "文三路1号" * 5}], "bandwidth": "100M",
                  "remarks": "r" * 300},
        "stages": [{"stage": s, "title": s, "kind": "call", "entered_at": dt(since - 600 * (5 - k)),
                    "finished_at": dt(since - 600 * (4 - k)), "duration_ms": 600000.0, "outcome": "ok"}
                   for k, s in enumerate(STAGES[:5])],
        "open_calls": open_calls, "timers": {}, "outbox": [],
        "state": {"status": "running", "seq": 9,
                  "tokens": {f"{oid}:1:token": {"id": f"{oid}:1:token", "node": stage, "phase": phase,
                                                "since": since, "timers": {}, "gates": gates, "wait": {}}},
                  "data": {"_calls": [{"node": s, "operation": "op", "ok": not (kind == 6 and k < 3),
                                       "via": "callback", "at": since - 600 * (4 - k), "text": "X成功"}
                                      for k, s in enumerate(STAGES[:4])],
                           "city": "杭州", "team": "t-1"}},
    }


def rules(n: int) -> list[Any]:
    from app.ops.rules import Rule, load_rule_files

    shipped = load_rule_files(Path(__file__).resolve().parents[1] / "config").rules
    extra = [Rule(id=f"SCOPED-{k:02d}", name=f"{PRODUCTS[k % 4]} {STAGES[k % 6]} over {2 + k} h",
                  scope={"product": PRODUCTS[k % 4], "stage": STAGES[k % 6]},
                  when=f"data.time_in_stage_s > {(2 + k) * 3600} && data.since_answer_s > 1800",
                  severity="major") for k in range(max(0, n - len(shipped)))]
    return [*shipped, *extra][:n]


def pct(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))]


async def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def run(args: argparse.Namespace, home: Path) -> None:
    from app.ops.evaluator import Evaluator
    from app.ops.facts import OPEN_STATUSES, PROJECTION
    from app.ops.overview import drill_down, overview
    from app.ops.rules import RuleStore
    from app.ops.settings import OpsSettings
    from flows.documents import ORDERS
    from hub import db as hubdb
    from hub.settings import Settings

    s = Settings()
    client = hubdb.connect(s)
    db = hubdb.database(client, s)
    await hubdb.ensure_indexes(db)
    pids = db_pids(home)
    now = time.time()
    rnd = random.Random(7)
    t = time.perf_counter()
    for start in range(0, args.orders, 2000):
        docs = await asyncio.to_thread(lambda a=start: [make_order(i, now, rnd) for i in
                                                        range(a, min(a + 2000, args.orders))])
        await db[ORDERS].insert_many(docs, ordered=False)
    print(f"seeded {args.orders} open orders in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    the_rules = rules(args.rules)
    await RuleStore(db).seed(the_rules)

    async def scan() -> int:
        n = 0
        async for _ in db[ORDERS].find({"status": {"$in": list(OPEN_STATUSES)}}, PROJECTION, batch_size=500):
            n += 1
        return n

    ops = OpsSettings(batch=500)
    ev = Evaluator(db, settings=ops, clock=lambda: now)
    rows = []
    for label, fn in (("baseline: bare scan", scan), ("cycle 1 (raises)", lambda: ev.cycle(force=True)),
                      ("cycle 2 (steady)", lambda: ev.cycle(force=True)), ("baseline: bare scan", scan)):
        c0, d0, w0 = time.process_time(), proc_cpu(pids), time.perf_counter()
        result = await fn()
        rows.append((label, time.perf_counter() - w0, time.process_time() - c0, proc_cpu(pids) - d0, result))
    print(f"\n{args.orders} open orders, {len(the_rules)} rules (bench/ops.py)")
    base = min(r[1] for r in rows if r[0].startswith("baseline"))
    for label, wall, cpu, dbcpu, result in rows:
        extra = (f"raised {result.raised}, cleared {result.cleared}, holding {result.holding}"
                 if hasattr(result, "raised") else f"{result} orders read")
        print(f"  {label:<22} wall {wall:7.2f} s  CPU here {cpu:6.2f} s  DB CPU {dbcpu:6.2f} s  "
              f"ratio to bare scan {wall / base:5.2f}   {extra}")
    n = args.queries
    snap = await timed(lambda: overview(db), n)
    live = await timed(lambda: overview(db, live=True), 1)
    stuck = await timed(lambda: drill_down(db, "stuck", product="internet_line", stage="design", now=now), 10)
    late = await timed(lambda: drill_down(db, "overdue", product="5g_lan", now=now), 10)
    for label, v in (("overview (snapshot)", snap), ("overview --live", live),
                     ("drill-down stuck/stage", stuck), ("drill-down overdue/product", late)):
        print(f"  {label:<26} n={len(v):<4} p50 {statistics.median(v):9.1f} ms   p99 {pct(v, 99):9.1f} ms")
    for coll, q in (("orders", {"status": {"$in": list(OPEN_STATUSES)}}),
                    ("orders", {"status": {"$in": list(OPEN_STATUSES)}, "product": "5g_lan"}),
                    ("orders", {"status": {"$in": list(OPEN_STATUSES)}, "current_stage": "design"}),
                    ("ops_alerts", {"holds": True, "kind": "order"}),
                    ("ops_alerts", {"holds": True, "kind": "order", "product": "internet_line", "stage": "design"}),
                    ("ops_alerts", {"status": {"$in": ["open", "tracking"]}})):
        try:
            find: dict[str, Any] = {"find": coll, "filter": q}
            plan = await db.command("explain", find, verbosity="queryPlanner")
            winning = str(plan.get("queryPlanner", {}).get("winningPlan", plan))[:160]
        except Exception as exc:  # the embedded server may not explain
            winning = f"(explain: {type(exc).__name__})"
        print(f"  index {coll} {list(q)}: {winning}")
    client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=20)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    with private_infra() as env:
        asyncio.run(run(args, Path(env["HUB_HOME"])))
    print("  " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
