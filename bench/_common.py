"""Shared benchmark plumbing: private embedded servers, closed-loop HTTP load, percentiles."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.infra.ephemeral import ephemeral_infra, free_port

__all__ = ["free_port", "private_infra"]


@contextmanager
def private_infra(sftp: bool = False) -> Iterator[dict[str, str]]:
    """Private tansu + SecantusDB on free ports (app/infra/ephemeral.py); yields the env to pass on."""
    with ephemeral_infra(sftp=sftp, HUB_LOG_LEVEL="WARNING"):
        yield {k: v for k, v in os.environ.items() if k.startswith("HUB_")}


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
