"""Intake throughput: the hub's REST order endpoint vs a bare aiohttp+aiokafka handler, same run.

    python -m bench.intake [--duration 20] [--concurrency 50] [--processes 1,2]

Both servers run as separate processes on loopback against the same private tansu broker; the
load generator runs in this process (closed loop, N concurrent clients). The hub path does
everything a real intake does: auth, JSON + schema validation, mapping, envelope, idempotency
lookup + record in MongoDB, Kafka produce with acks=all. The baseline only produces the same
bytes with aiokafka (acks=all) and answers 202.

``--processes 1,2``: one hub run per count, with that many intake processes sharing one port
(SO_REUSEPORT, ``HUB_HTTP_REUSE_PORT``, as ``hub run --role intake`` instances on one host would), each
against the one-process baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

from bench._common import closed_loop, free_port, private_infra, wait_http

ORDER = {
    "product": "internet_line",
    "scenario": "open",
    "customer": {"name": "杭州某某科技有限公司", "contact_phone": "13800000000", "customer_id": "C-0001"},
    "addresses": [{"role": "install", "city": "杭州", "district": "西湖区", "detail": "文三路 100 号 5 幢 3 楼"}],
    "bandwidth_mbps": 200,
    "access_type": "PON",
    "extensions": {"esopFlowId": "FLOW-" + "x" * 400, "salesman": "王五", "remark": "bench"},
}
RUN_ID = uuid.uuid4().hex[:8]


def make_order(i: int) -> tuple[bytes, dict[str, str]]:
    body = dict(ORDER, external_order_id=f"B{RUN_ID}-{i}")
    return json.dumps(body, ensure_ascii=False).encode(), {
        "Content-Type": "application/json",
        "X-Api-Key": "dev-esop-key-0001",
    }


# --- the two servers (each started as `python -m bench.intake serve-hub|serve-raw`) --------------
def serve_hub(port: int, reuse_port: bool = False) -> None:
    from aiohttp import web

    from app.runtime import Runtime
    from app.web import build_web_app
    from hub.settings import load_settings

    settings = load_settings(http_port=port)
    web.run_app(build_web_app(Runtime(settings)), host="127.0.0.1", port=port, access_log=None, print=None,
                reuse_port=reuse_port)


def serve_raw(port: int) -> None:
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    from hub.envelope import Envelope
    from hub.settings import load_settings

    settings = load_settings()
    sample = Envelope(type="order.received", source="esop", protocol="rest", correlation_id="ord-x",
                      idempotency_key="k", payload=dict(ORDER, external_order_id="X"))
    value, key, headers = sample.kafka_value(), sample.kafka_key(), sample.kafka_headers()
    producer: AIOKafkaProducer | None = None

    async def on_start(app: web.Application) -> None:
        nonlocal producer
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=1)
        await producer.start()

    async def on_stop(app: web.Application) -> None:
        assert producer is not None
        await producer.stop()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        assert producer is not None
        await producer.send_and_wait("bench.raw", value, key=key, headers=headers)
        return web.json_response({"ok": True}, status=202)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/raw", handle)
    app.router.add_get("/readyz", ok)
    app.on_startup.append(on_start)
    app.on_cleanup.append(on_stop)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve-hub", "serve-raw"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--processes", default="1", help="hub intake processes on one port, e.g. 1,2")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "serve-hub":
        return serve_hub(args.port, args.reuse_port)
    if args.mode == "serve-raw":
        return serve_raw(args.port)

    with private_infra() as env:
        from hub.kafka import ensure_topics
        from hub.settings import load_settings

        asyncio.run(ensure_topics(load_settings(), ["bench.raw"]))
        counts = [int(n) for n in args.processes.split(",")]
        runs = [("serve-raw", "/raw", "baseline aiohttp+aiokafka", 1)] + [
            ("serve-hub", "/api/v1/partners/esop/orders", f"hub REST intake x{n}", n) for n in counts]
        results = []
        for mode, path, name, n in runs:
            port = free_port()
            extra = ["--reuse-port"] if mode == "serve-hub" else []  # no cost for one process
            procs = [subprocess.Popen([sys.executable, "-m", "bench.intake", mode, "--port", str(port), *extra],
                                      env={**os.environ, **env}) for _ in range(n)]
            try:
                wait_http(f"http://127.0.0.1:{port}/readyz")
                if n > 1:
                    time.sleep(8)  # the other processes' start-up (one answering is not all answering)
                result = asyncio.run(closed_loop(name, f"http://127.0.0.1:{port}{path}", make_order,
                                                 concurrency=args.concurrency, duration=args.duration,
                                                 ok_status=202))
                results.append(result)
                print(result.line(), flush=True)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(timeout=30)
        base, hubs = results[0], results[1:]
        print(f"\nconcurrency {args.concurrency}, {args.duration:.0f} s measured per server (after 2 s warm-up)")
        for n, hub in zip(counts, hubs, strict=True):
            print(f"hub x{n} / baseline throughput ratio: {hub.rate / base.rate:.2f}"
                  f"   (p99 {hub.pct(99):.1f} ms vs {base.pct(99):.1f} ms)")
        print("target (issue 18 §2): >= 0.5 of the baseline with p99 < 50 ms")

if __name__ == "__main__":
    main()
