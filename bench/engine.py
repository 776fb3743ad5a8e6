"""Micro-benchmark of the pure v2 engine (flows/graph): events applied per second, in-process.

    python -m bench.engine [--orders 2000] [--fixtures tests/fixtures/flows]

Why: issue 10 asks to show that the engine itself is not the limit of the flow throughput (aim
≥ 20,000 events/s). It replays the recorded event sequences of tests/fixtures/flows/replay/*.json —
whole orders of the exemplar blueprints (P04.1 with its G9 loop and a cancel with compensation,
P06.4 PON with polling and gated G6 reports, the fusion flow with parallel branches and a receive,
the P14 child) — ``--orders`` times each, from an empty state, checking on the first pass that the
commands are the recorded ones. No I/O, no servers: ``step`` is a pure function, so this is the
CPU cost per event of a worker, including the copy of the state and the CEL evaluations. Both wall
time and process CPU time are printed: on a shared 2-core machine the wall figure mostly measures the
other processes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from flows.graph import step
from flows.graph.check import load_blueprint


def run(fixtures: Path, orders: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    total_events, total_s, total_cpu = 0, 0.0, 0.0
    for path in sorted((fixtures / "replay").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        bp = load_blueprint(fixtures / f"{doc['blueprint']}.yaml")
        steps = [(s["event"], s["at"]) for s in doc["steps"]]
        state: Any = None
        for s in doc["steps"]:  # correctness first: the engine still gives the recorded commands
            state, commands = step(bp, state, s["event"], s["at"])
            if commands != s["commands"]:
                raise SystemExit(f"{path.name}: the engine no longer replays this recording")
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(orders):
            state = None
            for event, at in steps:
                state, _ = step(bp, state, event, at)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        events = orders * len(steps)
        total_events += events
        total_s += elapsed
        total_cpu += cpu
        results[path.stem] = {"events_per_order": len(steps), "events": events,
                              "events_per_s": round(events / elapsed), "events_per_cpu_s": round(events / cpu),
                              "us_per_event": round(1e6 * elapsed / events, 1)}
    results["all"] = {"events": total_events, "events_per_s": round(total_events / total_s),
                      "events_per_cpu_s": round(total_events / total_cpu),
                      "us_per_event": round(1e6 * total_s / total_events, 1)}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=2000, help="times each recorded order is replayed")
    ap.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/flows")
    args = ap.parse_args()
    results = run(args.fixtures, args.orders)
    for name, r in results.items():
        per_order = f"{r['events_per_order']:>3} ev/order  " if "events_per_order" in r else " " * 16
        print(f"{name:<22} {per_order}{r['events_per_s']:>9,} events/s (wall)  {r['events_per_cpu_s']:>9,} "
              f"events/CPU-s  {r['us_per_event']:>7} µs/event")
    print(json.dumps({"engine_events_per_s": results["all"]["events_per_s"],
                      "engine_events_per_cpu_s": results["all"]["events_per_cpu_s"]}))


if __name__ == "__main__":
    main()
