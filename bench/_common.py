"""Shared benchmark plumbing: private embedded servers, closed-loop HTTP load, percentiles."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from app.infra.ephemeral import ephemeral_infra, free_port

__all__ = ["HUB", "free_port", "hub_with_simulators", "private_infra"]

ROOT = Path(__file__).resolve().parent.parent
HUB = str(ROOT / ".venv" / "bin" / "hub") if (ROOT / ".venv" / "bin" / "hub").exists() else "hub"


@contextmanager
def private_infra(sftp: bool = False) -> Iterator[dict[str, str]]:
    """Private tansu + SecantusDB on free ports (app/infra/ephemeral.py); yields the env to pass on."""
    with ephemeral_infra(sftp=sftp, HUB_LOG_LEVEL="WARNING"):
        yield {k: v for k, v in os.environ.items() if k.startswith("HUB_")}


@contextmanager
def hub_with_simulators(env: dict[str, str], logs: Path, *, ready_s: float = 90, tag: str = "",
                        workers: list[dict[str, str]] | None = None,
                        command: list[str] | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``hub simulate`` on ``HUB_SIM_URL``'s port and ``hub run`` with ``env`` (over ``os.environ``),
    logs in ``logs``; yields [simulators, worker, …] once every worker's ``/readyz`` answers and the
    consumer group had time to join; all are stopped (terminate, then kill after 30 s) on the way out.
    One start-up for the flow, fusion and tracing benchmarks, which each carried their own copy.

    ``workers``: one ``hub run`` per item, each with those variables over ``env`` (its own
    ``HUB_HTTP_PORT``, ``HUB_WORKER_ID`` …), all in one consumer group on the same broker and
    database; default one worker with ``env`` alone. A worker's log is ``worker{-tag}.log`` for the
    first and ``worker{-tag}-{n}.log`` for the n-th after it. A worker the caller killed is reaped.

    ``command``: what starts a worker instead of ``hub run`` (bench/soak.py: ``hub run`` with one more
    gauge, its event loop's task count)."""
    full = {**os.environ, **env}
    sim_port = env["HUB_SIM_URL"].rsplit(":", 1)[1]
    procs: list[subprocess.Popen[bytes]] = []
    suffix = f"-{tag}" if tag else ""
    try:
        with (logs / f"sim{suffix}.log").open("wb") as slog:
            procs.append(subprocess.Popen([HUB, "simulate", "--port", sim_port], env=full, stdout=slog,
                                          stderr=subprocess.STDOUT))
        ports = []
        for n, extra in enumerate(workers or [{}], start=1):
            name = f"worker{suffix}.log" if n == 1 else f"worker{suffix}-{n}.log"
            with (logs / name).open("wb") as wlog:
                procs.append(subprocess.Popen(command or [HUB, "run"], env={**full, **extra}, stdout=wlog,
                                              stderr=subprocess.STDOUT))
            ports.append({**env, **extra}["HUB_HTTP_PORT"])
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/readyz", ready_s)
        time.sleep(4 + 2 * (len(ports) - 1))  # consumer group join (a rebalance per further worker)
        yield procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@dataclass
class LoadResult:
    name: str
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))]

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.rate:9.1f} req/s   p50 {self.pct(50):7.2f} ms   p99 {self.pct(99):7.2f} ms   "
            f"ok {self.ok}  errors {self.errors}  ({self.seconds:.1f} s)"
        )


async def closed_loop(
    name: str,
    url: str,
    make_request: Callable[[int], tuple[bytes, dict[str, str]]],
    *,
    concurrency: int,
    duration: float,
    ok_status: int,
    warmup: float = 2.0,
) -> LoadResult:
    """``concurrency`` clients each sending the next request as soon as the last was answered."""
    counter = 0
    latencies: list[float] = []
    errors = 0
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def worker() -> None:
            nonlocal counter, errors, ok
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                counter += 1
                body, headers = make_request(counter)
                t0 = time.perf_counter()
                try:
                    async with http.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        good = resp.status == ok_status
                except aiohttp.ClientError:
                    good = False
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    if good:
                        ok += 1
                        latencies.append((t1 - t0) * 1000)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(name, ok, errors, duration, latencies)


def summary(values: list[float]) -> str:
    return f"mean {statistics.mean(values):.2f}" if values else "n/a"


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def json_default(o: Any) -> Any:
    return str(o)
