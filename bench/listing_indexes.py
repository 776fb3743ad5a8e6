"""What the orders listing's two indexes (app/admin/listing.py: by_status_created, by_stage_created)
cost the engine's order writes on SecantusDB.

    python -m bench.listing_indexes [--orders 1000] [--url mongodb://…]

Two collections of bench.console's order documents, one with the indexes the hub had before
(by_external, by_status_product, by_stage, by_created), one with the two more; then, on each, one
``update_one`` per order that changes status and stage (an order moving on: the new indexes' entries
change too) and one that changes only ``updated_at`` (most engine writes: theirs do not). Written as
the hub writes (``retryWrites`` off on the embedded server, journaled). Baseline = the collection
without the two indexes, in the same run, alternated twice.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient

from bench.console import digest, order_doc

BEFORE = [("by_external", [("partner", 1), ("external_order_id", 1)]),
          ("by_status_product", [("status", 1), ("product", 1), ("updated_at", -1)]),
          ("by_stage", [("current_stage", 1), ("status", 1)]), ("by_created", [("created_at", -1)])]
ADDED = [("by_status_created", [("status", 1), ("created_at", -1)]),
         ("by_stage_created", [("current_stage", 1), ("created_at", -1)])]


def run(url: str, count: int) -> None:
    now, rnd, pinned = datetime.now(UTC), random.Random(7), digest()
    client: MongoClient[dict[str, Any]]
    with MongoClient(url, tz_aware=True, journal=True, retryWrites=False) as client:
        db: Any = client["bench_listing_indexes"]
        try:
            for rep in range(2):
                for name, indexes in (("before", BEFORE), ("with the listing's", BEFORE + ADDED)):
                    coll = db[f"orders_{rep}_{len(indexes)}"]
                    coll.drop()
                    for index, keys in indexes:
                        coll.create_index(keys, name=index)
                    coll.insert_many([order_doc(i, count, now, pinned, rnd) for i in range(count)])
                    t0 = time.perf_counter()
                    for i in range(count):
                        coll.update_one({"_id": f"ord-bench-{i:06d}"},
                                        {"$set": {"status": "waiting", "current_stage": "design", "updated_at": now}})
                    t1 = time.perf_counter()
                    for i in range(count):
                        coll.update_one({"_id": f"ord-bench-{i:06d}"}, {"$set": {"updated_at": datetime.now(UTC)}})
                    t2 = time.perf_counter()
                    print(f"{name + ' indexes':<28} ({len(indexes)}): status+stage change "
                          f"{(t1 - t0) / count * 1000:5.2f} ms/update, updated_at only "
                          f"{(t2 - t1) / count * 1000:5.2f} ms/update", flush=True)
        finally:
            client.drop_database("bench_listing_indexes")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--url", help="a running SecantusDB / MongoDB (default: a private SecantusDB)")
    args = ap.parse_args()
    if args.url:
        run(args.url, args.orders)
        return
    from bench._common import private_infra
    from hub.settings import Settings

    with private_infra():
        run(Settings().mongo_uri, args.orders)


if __name__ == "__main__":
    main()
