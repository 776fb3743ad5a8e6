"""Shared simulator state: failure mode per partner, the log of received calls, callback sender, and
the first answer to each idempotency key.

A real partner dedupes by the ``Idempotency-Key`` it is sent: a key it already accepted gets the
first answer again and no second side effect (no second callback). The simulators do the same, and
count it: :meth:`SimulatorState.duplicates` lists the keys a partner accepted more than once, which
is what "no partner sees a call twice" (issue 10) is asserted on. A request that was refused (down,
5xx, a business rejection) did nothing, so its retry is not a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
Mode = Literal["ok", "down", "slow", "error", "http_error", "duplicate_callback", "late_callback"]


class Control(BaseModel):
    """Body of ``POST /_control/{partner}``."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "ok"
    delay_s: float = Field(default=2.0, ge=0, le=600, description="slow answer / late callback delay")
    callback_delay_s: float = Field(default=0.0, ge=0, le=60, description="normal callback delay")


@dataclass
class Received:
    partner: str
    operation: str
    idempotency_key: str | None
    body: Any
    at: float
    answered: str


@dataclass(frozen=True)
class SentCallback:
    """A callback the simulator posted to the hub and the status it got (a staged reply's later stages
    refused with 403 is what `hub demo --all` found; tests assert every stage was accepted)."""

    partner: str
    body: dict[str, Any]
    status: int


@dataclass(frozen=True)
class Answer:
    """What a partner answered the first time it accepted a key (replayed to a repeat)."""

    status: int
    body: bytes
    content_type: str
    charset: str | None = None


@dataclass
class PartnerState:
    control: Control = field(default_factory=Control)
    calls: list[Received] = field(default_factory=list)


@dataclass
class Job:
    """A request accepted in poll mode: its result, handed out after ``processing`` 'not yet' answers."""

    operation: str
    result: dict[str, Any]
    processing: int
    queries: int = 0


class SimulatorState:
    """One per simulator server. ``callback_keys``: partner → API key it presents to the hub."""

    def __init__(self, callback_keys: dict[str, tuple[str, str]]) -> None:
        self.partners: dict[str, PartnerState] = {}
        self.callback_keys = callback_keys
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.callbacks_sent = 0
        self.callbacks_failed = 0
        # the callbacks answered by the hub (< 500), in order; the latest 10,000 (a long `hub simulate`)
        self.sent: deque[SentCallback] = deque(maxlen=10_000)
        self.answers: dict[tuple[str, str], Answer] = {}  # (partner, key) → first accepted answer
        self.accepted: dict[tuple[str, str], int] = {}  # (partner, key) → requests since it was accepted
        self.jobs: dict[tuple[str, str], Job] = {}  # (partner, ref) → a poll-mode request's pending result
        # kept as calls arrive, not counted over the log per ``/_calls``: benchmarks poll it several times
        # a second, and over a long run's ~300,000 calls the recount alone took a share of a core that grew
        # with the run (bench/fusion.py, 2026-12-03)
        self._counts: dict[str, dict[str, int]] = {}
        self._repeated: set[tuple[str, str]] = set()  # (partner, key) accepted, then sent again

    def partner(self, name: str) -> PartnerState:
        return self.partners.setdefault(name, PartnerState())

    def record(self, partner: str, operation: str, key: str | None, body: Any, answered: str) -> None:
        self.partner(partner).calls.append(Received(partner, operation, key, body, time.time(), answered))
        ops = self._counts.setdefault(partner, {})
        ops[operation] = ops.get(operation, 0) + 1

    def repeated(self, partner: str, key: str | None) -> Answer | None:
        """The first answer if ``partner`` already accepted ``key`` (and count this request)."""
        if not key or (partner, key) not in self.answers:
            return None
        self.accepted[(partner, key)] += 1
        self._repeated.add((partner, key))
        return self.answers[(partner, key)]

    def accept(self, partner: str, key: str | None, answer: Answer) -> None:
        """``partner`` accepted ``key`` for the first time and answered ``answer``."""
        if key:
            self.answers[(partner, key)] = answer
            self.accepted[(partner, key)] = 1

    def duplicates(self) -> dict[str, dict[str, int]]:
        """Partner → {key: requests} for every key a partner accepted and was then sent again."""
        out: dict[str, dict[str, int]] = {}
        for partner, key in sorted(self._repeated):
            if (n := self.accepted.get((partner, key), 0)) > 1:
                out.setdefault(partner, {})[key] = n
        return out

    def reset(self) -> None:
        for st in self.partners.values():
            st.calls.clear()
            st.control = Control()
        self.answers.clear()
        self.accepted.clear()
        self._counts.clear()
        self._repeated.clear()
        self.jobs.clear()
        self.sent.clear()

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(ops) for name, ops in self._counts.items()}

    def schedule_callback(self, partner: str, request: dict[str, Any], operation: str, result: dict[str, Any],
                          status: str = "ok") -> None:
        """Answer asynchronously, as the real partner does, honouring the callback failure modes."""
        self.schedule_callbacks(partner, request, operation, [(status, result)])

    def schedule_callbacks(self, partner: str, request: dict[str, Any], operation: str,
                           stages: list[tuple[str, dict[str, Any]]]) -> None:
        """Several callbacks in order (a staged reply: accepted → surveyed → built → completed), each one
        sent after the previous was delivered, ``callback_delay_s`` apart; ``late_callback`` delays the
        first, ``duplicate_callback`` sends each twice."""
        url = request.get("callback_url")
        if not url:
            return
        bodies = [{"order_id": request.get("hub_order_id") or request.get("orderId"),
                   "callback_ref": request.get("callback_ref"), "operation": operation, "status": status,
                   "result": result} for status, result in stages]
        ctl = self.partner(partner).control
        first = ctl.delay_s if ctl.mode == "late_callback" else ctl.callback_delay_s
        times = 2 if ctl.mode == "duplicate_callback" else 1
        task = asyncio.ensure_future(self._send_all(partner, url, bodies, first, ctl.callback_delay_s, times))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_all(self, partner: str, url: str, bodies: list[dict[str, Any]], first: float, between: float,
                        times: int) -> None:
        for i, body in enumerate(bodies):
            await self._send(partner, url, body, first if i == 0 else between, times)

    async def _send(self, partner: str, url: str, body: dict[str, Any], delay: float, times: int) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        header, key = self.callback_keys.get(partner, ("X-Api-Key", ""))
        for _ in range(times):
            wait = 0.2
            deadline = time.monotonic() + 120  # a partner keeps retrying while the hub restarts
            while True:
                try:
                    async with self._session.post(url, json=body, headers={header: key}) as resp:
                        if resp.status < 500:
                            self.callbacks_sent += 1
                            self.sent.append(SentCallback(partner, body, resp.status))
                            if resp.status >= 400:
                                log.warning("hub refused %s callback: %s %s", partner, resp.status, await resp.text())
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    self.callbacks_failed += 1
                    log.error("gave up calling back %s for %s", url, body.get("order_id"))
                    break
                await asyncio.sleep(wait)
                wait = min(wait * 2, 3)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
