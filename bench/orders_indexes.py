"""What the orders collection's status and time indexes make the embedded SecantusDB read: the
real-time report sweep and the operations overview's drill-down, before and after by_updated.

    python -m bench.orders_indexes [--orders 20000] [--open-share 0.3]

Two collections of the same synthetic orders (~3 KB each, 70 % completed, 10 % of a reportable
product), each with the status and stage indexes the hub keeps; ``before`` with the retired
by_status_product (status, product, updated_at), ``after`` with by_updated (updated_at, status,
product). Prints the best of three for: the sweep's query as each version of app/reports/realtime.py
asks it (before: led by ``status $in`` every status; after: led by the ``updated_at`` range), the
drill-down of one product's open orders and of one stage, hinted (as app/ops/overview.py did) and
not, and 1,000 writes of ``updated_at`` on each collection (what an index on it costs the engine).
SecantusDB serves a find from the first clause an index leads with; a hint made it slower.

Measured 2026-12-02, 2-core VM, other engineers' tests beside it (load 5-12), 20,000 orders, two runs:
sweep 1,348 / 2,336 ms before, 4.4 / 6.2 ms after; product drill-down 1,316 / 2,333 ms hinted
by_status_product, 229 / 483 ms unhinted; stage drill-down 1,268 / 1,778 ms hinted by_stage, 213 /
739 ms unhinted; 1,000 updated_at writes 3.95 / 5.45 s before, 5.00 / 5.44 s after (noise: the same
number of index fields change).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient

from bench._common import private_infra

STATUSES = ["in_flight", "waiting", "completed", "failed", "cancelled"]  # app/reports/realtime.py
OPEN = ["in_flight", "waiting"]
REPORTABLE = ["srv6_vpn", "transmission_line"]
PRODUCTS = ["internet_line"] * 8 + REPORTABLE


def best_ms(fn: Callable[[], list[Any]], reps: int = 3) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(reps):
        t0 = time.perf_counter()
        n = len(fn())
        best = min(best, time.perf_counter() - t0)
    return best * 1000, n


def run(url: str, count: int, open_share: float) -> None:
    now, rnd = datetime.now(UTC), random.Random(1)
    docs = [{"_id": f"o{i}", "status": "completed" if i < count * (1 - open_share) else rnd.choice(OPEN),
             "product": rnd.choice(PRODUCTS), "current_stage": "design",
             "created_at": now - timedelta(seconds=count - i), "updated_at": now - timedelta(seconds=(count - i) // 2),
             "payload": "x" * 3000} for i in range(count)]
    with MongoClient(url, tz_aware=True, retryWrites=False) as client:
        db: Any = client["bench_orders_indexes"]
        before, after = db["before"], db["after"]
        for coll in (before, after):
            coll.drop()
            for i in range(0, count, 1000):
                coll.insert_many(docs[i:i + 1000])
            coll.create_index([("status", 1), ("created_at", -1)], name="by_status_created")
            coll.create_index([("current_stage", 1), ("status", 1)], name="by_stage")
        before.create_index([("status", 1), ("product", 1), ("updated_at", -1)], name="by_status_product")
        after.create_index([("updated_at", 1), ("status", 1), ("product", 1)], name="by_updated")
        mark = now - timedelta(seconds=30)
        cell = {"status": {"$in": OPEN}, "product": "srv6_vpn"}
        stage = {"status": {"$in": OPEN}, "current_stage": "design"}
        rows = {
            "sweep before (status $in first)": lambda: list(before.find(
                {"status": {"$in": STATUSES}, "product": {"$in": REPORTABLE}, "updated_at": {"$gte": mark}},
                {"_id": 1}).sort("updated_at", 1).limit(500)),
            "sweep after (updated_at first)": lambda: list(after.find(
                {"updated_at": {"$gte": mark}, "product": {"$in": REPORTABLE}, "status": {"$in": STATUSES}},
                {"_id": 1}).sort("updated_at", 1).limit(500)),
            "product drill-down, hinted by_status_product": lambda: list(
                before.find(cell, {"_id": 1}).hint("by_status_product")),
            "product drill-down, not hinted": lambda: list(after.find(cell, {"_id": 1})),
            "stage drill-down, hinted by_stage": lambda: list(after.find(stage, {"_id": 1}).hint("by_stage")),
            "stage drill-down, not hinted": lambda: list(after.find(stage, {"_id": 1})),
        }
        print(f"{count} orders, {open_share:.0%} open, {len(REPORTABLE)} of {len(set(PRODUCTS))} products reportable")
        for label, fn in rows.items():
            ms, n = best_ms(fn)
            print(f"  {label:<46} {ms:9.1f} ms  ({n} orders)")
        for label, coll in (("before", before), ("after", after)):
            t0 = time.perf_counter()
            for i in range(count - 1000, count):
                coll.update_one({"_id": f"o{i}"}, {"$set": {"updated_at": datetime.now(UTC), "n": i}})
            print(f"  1,000 updated_at writes, {label:<6}                   {time.perf_counter() - t0:9.2f} s")
        before.drop()
        after.drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=20000)
    ap.add_argument("--open-share", type=float, default=0.3)
    ap.add_argument("--url", default=None, help="an existing server instead of a private SecantusDB")
    args = ap.parse_args()
    if args.url:
        run(args.url, args.orders, args.open_share)
        return
    with private_infra():
        run(f"mongodb://127.0.0.1:{os.environ['HUB_MONGO_PORT']}/?directConnection=true", args.orders, args.open_share)


if __name__ == "__main__":
    main()
