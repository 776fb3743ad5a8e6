"""CircuitBreaker: stop calling a partner that keeps failing, try again after a cool-down.

Closed → **open** after ``failures`` consecutive retryable failures (timeouts, 5xx, refused: the
partner is unwell; a business rejection is an answer and resets the count). While open, every
attempt fails fast as *retryable* (status ``circuit_open``) without calling the partner, so the
Retry wrapper backs off as for any outage and the envelope still ends in a dead letter when its
attempts run out — nothing is dropped. After ``cooldown_s`` the circuit is **half-open**: one trial
call goes through; its success closes the circuit, its failure opens it for another cool-down.
The clock is injected (monotonic seconds) so tests step time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from connectors.base import Outcome, Sink
from connectors.delivery.wrapper import Wrapper
from hub.envelope import Envelope

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class CircuitPolicy:
    failures: int = 5
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.cooldown_s < 0:
            raise ValueError("circuit: failures must be >= 1 and cooldown_s >= 0")


class CircuitBreaker(Wrapper):
    name: ClassVar[str] = "circuit_breaker"

    def __init__(self, next: Sink, policy: CircuitPolicy, *, label: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(next)
        self.policy = policy
        self.label = label or next.name
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial call is in flight

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.policy.cooldown_s:
            return "half_open"
        return "open"

    async def deliver(self, envelope: Envelope) -> Outcome:
        state = self.state
        if state == "open" or (state == "half_open" and self._trial):
            return self._fail_fast()
        trial = state == "half_open"
        self._trial = self._trial or trial
        try:
            outcome = await self.next.deliver(envelope)
        finally:
            if trial:
                self._trial = False
        if not outcome.ok and outcome.retryable:
            self._failures += 1
            if trial or self._failures >= self.policy.failures:
                self._opened_at = self._clock()
        else:  # ok, or an answer that proves the partner is up
            self._failures = 0
            self._opened_at = None
        return outcome

    def _fail_fast(self) -> Outcome:
        assert self._opened_at is not None
        left = max(0.0, self.policy.cooldown_s - (self._clock() - self._opened_at))
        return Outcome(ok=False, retryable=True, status="circuit_open",
                       error=f"circuit open: {self._failures} consecutive failures of {self.label}; "
                             f"next trial in {left:.1f}s")
