"""What call-chain tracing costs per order: the whole flow (bench/flow.py's driver) with tracing off
(``HUB_TRACING=false``: no span at all, the code as before) and on with the OTLP export
(``HUB_OTLP_ENDPOINT`` at a small aiohttp receiver on loopback, in its own process) — in the same
run, against one private tansu + SecantusDB, alternating so that the machine's load hits both.

    python -m bench.tracing [--duration 30] [--window 200] [--rounds 1]

Printed per mode: complete internet-line orders/s, the hub worker's CPU milliseconds per order
(``/proc``, threads included: the OTLP batch thread too), p50/p99 intake → completion, MongoDB
inserts per order; then the ratios on/off. And a micro figure: µs per span in this process for
``hub.tracing.hop`` with no tracer, with the SDK + MongoDB summary, and with the OTLP exporter too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import free_port, hub_with_simulators, private_infra, wait_http
from bench.flow import drive, infra_pids

RECEIVER = r'''
import sys
from aiohttp import web
state = {"posts": 0, "bytes": 0}
async def traces(request):
    body = await request.read()
    state["posts"] += 1
    state["bytes"] += len(body)
    return web.Response(body=b"", content_type="application/x-protobuf")
async def stats(request):
    return web.json_response(state)
app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/v1/traces", traces)
app.router.add_get("/stats", stats)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
'''


def run_mode(env: dict[str, str], mode: str, receiver: str, args: argparse.Namespace, home: Path) -> dict[str, Any]:
    tag = f"{mode[:2]}{uuid.uuid4().hex[:5]}"
    sim_port, http_port = free_port(), free_port()
    env = {**env, "HUB_HTTP_PORT": str(http_port), "HUB_SIM_URL": f"http://127.0.0.1:{sim_port}",
           "HUB_TOPIC_PREFIX": f"bt{tag}", "HUB_MONGO_DB": f"bt_{tag}", "HUB_KAFKA_EXACT_OFFSETS": "true",
           "HUB_WORKER_ID": f"bt-{tag}", "HUB_TRACING": "false" if mode == "off" else "true"}
    env.pop("HUB_OTLP_ENDPOINT", None)
    if mode == "otlp":
        env["HUB_OTLP_ENDPOINT"] = receiver
    with hub_with_simulators(env, home, tag=tag) as procs:
        from hub.settings import load_settings

        s = load_settings()
        pids = {"worker": [procs[1].pid], "simulators": [procs[0].pid], **infra_pids(home)}
        flow = asyncio.run(drive(f"http://127.0.0.1:{http_port}", env["HUB_SIM_URL"], s.mongo_uri,
                                 env["HUB_MONGO_DB"], s.kafka_bootstrap, env["HUB_TOPIC_PREFIX"], pids,
                                 args.duration, args.window, args.warmup, args.max_warmup))
    rate = flow["orders_per_s"] or float("nan")
    return {"mode": mode, "orders_per_s": round(rate, 2),
            "worker_cpu_ms_per_order": round(flow["cores_used"].get("worker", 0.0) / rate * 1000, 1),
            "database_cpu_ms_per_order": round(flow["cores_used"].get("database", 0.0) / rate * 1000, 1),
            "worker_cores": flow["cores_used"].get("worker"), "database_cores": flow["cores_used"].get("database"),
            "load": round(os.getloadavg()[0], 1),
            "p50_ms": round(flow["p50_ms"]), "p99_ms": round(flow["p99_ms"]),
            "inserts_per_order": flow["mongo_ops_per_order"].get("insert")}


async def micro(mongo_uri: str, receiver: str, n: int) -> dict[str, float]:
    """µs per span of ``hop`` (start, child(), end) in this process, per configuration."""
    from motor.motor_asyncio import AsyncIOMotorClient

    from hub import tracing
    from hub.envelope import TraceContext

    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongo_uri, tz_aware=True)
    db = client[f"btm_{uuid.uuid4().hex[:6]}"]
    out: dict[str, float] = {}
    configs: dict[str, tracing.Tracing] = {
        "no tracer": tracing.Tracing(),
        "SDK + MongoDB summary": tracing.Tracing.build(endpoint=None, service_name="bench", db=db),
        "SDK + summary + OTLP": tracing.Tracing.build(endpoint=receiver, service_name="bench", db=db)}
    for name, tr in configs.items():
        previous = tracing.install(tr)
        trace = TraceContext()
        t0 = time.perf_counter()
        for i in range(n):
            with tracing.hop(trace, "hub.engine", "call.result", f"ord-{i % 500}") as h:
                trace.child()
            if i % 200 == 0:
                await asyncio.sleep(0)  # let the summary task write, as the worker's loop would
        out[name] = round((time.perf_counter() - t0) / n * 1e6, 1)
        del h
        await tr.close()
        tracing.install(previous)
    client.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--max-warmup", type=float, default=120.0)
    ap.add_argument("--window", type=int, default=200, help="orders kept in flight")
    ap.add_argument("--rounds", type=int, default=1, help="off/otlp pairs, alternating")
    ap.add_argument("--spans", type=int, default=20000, help="spans for the micro figure")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with private_infra() as env:
        home = Path(env["HUB_HOME"])
        port = free_port()
        receiver_proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
        receiver = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{receiver}/stats", 30)
            from hub.settings import load_settings

            print(f"micro, µs per span: {asyncio.run(micro(load_settings().mongo_uri, receiver, args.spans))}",
                  flush=True)
            results: list[dict[str, Any]] = []
            for _ in range(args.rounds):
                for mode in ("off", "otlp"):
                    r = run_mode(env, mode, receiver, args, home)
                    print(r, flush=True)
                    results.append(r)
            import json
            import urllib.request

            with urllib.request.urlopen(f"{receiver}/stats", timeout=5) as resp:
                print(f"receiver: {json.loads(resp.read())}")
        finally:
            receiver_proc.terminate()
            receiver_proc.wait(10)
    for key in ("orders_per_s", "worker_cpu_ms_per_order", "database_cpu_ms_per_order", "p50_ms"):
        off = sum(r[key] for r in results if r["mode"] == "off") / args.rounds
        on = sum(r[key] for r in results if r["mode"] == "otlp") / args.rounds
        print(f"{key}: off {off:.1f}  on+OTLP {on:.1f}  ratio {on / off if off else float('nan'):.3f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
