"""Issue 17 probe: 200 connections trickling a byte every 5 s — how long do they stay open?

The hub (``python -m bench.slow_clients serve``: the real web app served by ``app.web.serve``, as
``hub run`` does, on private embedded servers) against N clients, half trickling a request head,
half a POST body after a complete head, one byte every ``--every`` s. Prints every 5 s how many are
still open and ``/healthz`` latency meanwhile; ``--before`` serves with both bounds at 3600 s (what
aiohttp's defaults gave: no head or body bound within the run).
``python -m bench.slow_clients [--before] [--clients 200] [--every 5] [--duration 60]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import aiohttp

from bench._common import free_port, private_infra, wait_http

HEAD = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Padding: " + b"a" * 200
BODY_HEAD = (b"POST /api/v1/partners/esop/orders HTTP/1.1\r\nHost: hub\r\nX-Api-Key: dev-esop-key-0001\r\n"
             b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")


def serve(port: int) -> None:
    from app.runtime import Runtime
    from app.web import build_web_app, serve
    from hub.settings import load_settings

    async def main() -> None:
        settings = load_settings(http_port=port)
        runner = await serve(build_web_app(Runtime(settings)), settings)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


async def client(port: int, prefix: bytes, data: bytes, every: float, open_: set[int], n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    open_.add(n)
    writer.write(prefix)
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(65536), every) == b"":
                    break
                # an answer (408): keep reading until the server closes
                while await asyncio.wait_for(reader.read(65536), 60):
                    pass
                break
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    finally:
        open_.discard(n)
        writer.close()


async def probe(port: int, args: argparse.Namespace) -> None:
    open_: set[int] = set()
    tasks = [asyncio.create_task(client(port, b"" if n % 2 == 0 else BODY_HEAD, HEAD if n % 2 == 0 else b"x" * 999,
                                        args.every, open_, n)) for n in range(args.clients)]
    started = time.monotonic()
    latencies: list[float] = []
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        next_report = 5.0
        while (elapsed := time.monotonic() - started) < args.duration:
            t = time.perf_counter()
            async with http.get("/healthz") as resp:
                assert resp.status == 200
            latencies.append((time.perf_counter() - t) * 1000)
            if elapsed >= next_report:
                lat = sorted(latencies)
                print(f"t={elapsed:5.1f} s  open {len(open_):4d}/{args.clients}  /healthz p50 "
                      f"{lat[len(lat) // 2]:.1f} ms max {lat[-1]:.1f} ms", flush=True)
                latencies.clear()
                next_report += 5.0
            await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="probe", choices=["probe", "serve"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--before", action="store_true", help="both bounds at 3600 s (no bound within the run)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--every", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=60.0)
    args = ap.parse_args()
    if args.mode == "serve":
        return serve(args.port)
    bounds = {"HUB_HTTP_HEADER_TIMEOUT_S": "3600", "HUB_HTTP_BODY_TIMEOUT_S": "3600"} if args.before else {}
    with private_infra() as env:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bench.slow_clients", "serve", "--port", str(port)],
                                env={**os.environ, **env, **bounds})
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz")
            print(f"{args.clients} clients, a byte every {args.every:g} s; bounds: "
                  + ("3600 s (before)" if args.before else "defaults"), flush=True)
            asyncio.run(probe(port, args))
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
