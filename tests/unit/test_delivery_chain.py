"""The delivery wrappers (connectors/delivery), each alone and composed, against an in-memory fake
*partner* sink; time is injected (no real sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from connectors.base import Outcome
from connectors.delivery import (
    AttemptMetrics,
    ChainSpec,
    CircuitBreaker,
    CircuitPolicy,
    Concurrency,
    GiveUpMetrics,
    Idempotency,
    MemoryDeliveryLog,
    Retry,
    Timeout,
    build_chain,
    innermost,
    trail,
)
from hub.envelope import Envelope
from hub.metrics import DELIVERY_ATTEMPTS, DELIVERY_FAILURES
from hub.retry import RetryPolicy

OK = Outcome(ok=True, status="ok", response={"code": "0"}, duration_ms=3.0)
DOWN = Outcome(ok=False, retryable=True, status="error", error="ConnectionRefused", duration_ms=1.0)
REJECTED = Outcome(ok=False, retryable=False, status="rejected", error="code='1': 资源不足", duration_ms=2.0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakePartner:
    """A partner that answers from a script (then repeats its last answer); counts calls."""

    name: ClassVar[str] = "fake"

    def __init__(self, answers: Iterable[Outcome | BaseException | float]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []
        self.started = self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def deliver(self, envelope: Envelope) -> Outcome:
        self.calls.append(envelope.idempotency_key)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, float):  # hang this long
            await asyncio.sleep(answer)
            return OK
        return answer


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


MemoryLog = MemoryDeliveryLog  # in-memory ``deliveries`` (the DeliveryLog contract; MongoDeliveryLog in the hub)


def call(key: str = "call:ord-1:activation") -> Envelope:
    return Envelope(type="call.request", source="hub", protocol="rest", correlation_id="ord-1",
                    idempotency_key=key, payload={"operation": "activation", "call_id": "c-1", "request": {}})


POLICY = RetryPolicy(max_attempts=4, backoff_initial_s=0.5, backoff_multiplier=2, backoff_max_s=1.5, jitter_s=0,
                     timeout_s=1, concurrency=2)


# --- Timeout ---------------------------------------------------------------------------------------
async def test_timeout_turns_a_hang_into_a_retryable_timeout_and_a_raise_into_a_permanent_error() -> None:
    hung = await Timeout(FakePartner([5.0]), 0.01).deliver(call())
    assert (hung.ok, hung.retryable, hung.status) == (False, True, "timeout")
    bug = await Timeout(FakePartner([KeyError("template")]), 1).deliver(call())
    assert (bug.ok, bug.retryable, bug.status) == (False, False, "error") and "KeyError" in (bug.error or "")
    assert await Timeout(FakePartner([OK]), 1).deliver(call()) == OK


# --- Retry -----------------------------------------------------------------------------------------
async def test_retry_backs_off_exponentially_until_ok_and_keeps_every_attempt() -> None:
    partner, sleeps = FakePartner([DOWN, DOWN, OK]), Sleeps()
    outcome = await Retry(partner, POLICY, sleep=sleeps, now=lambda: T0).deliver(call())
    assert outcome.ok and len(partner.calls) == 3
    assert sleeps.waits == [0.5, 1.0]
    assert [(a.outcome, a.error, a.at) for a in trail.attempts(outcome)] == [
        ("error", "ConnectionRefused", T0), ("error", "ConnectionRefused", T0), ("ok", None, T0)]


async def test_retry_stops_at_max_attempts_with_the_last_failure_and_caps_the_backoff() -> None:
    partner, sleeps = FakePartner([DOWN]), Sleeps()
    outcome = await Retry(partner, POLICY, sleep=sleeps).deliver(call())
    assert (outcome.ok, outcome.retryable, outcome.error) == (False, True, "ConnectionRefused")
    assert len(partner.calls) == POLICY.max_attempts == len(trail.attempts(outcome))
    assert sleeps.waits == [0.5, 1.0, 1.5]  # 2.0 capped at backoff_max_s


async def test_retry_does_not_retry_a_permanent_failure() -> None:
    partner, sleeps = FakePartner([REJECTED]), Sleeps()
    outcome = await Retry(partner, POLICY, sleep=sleeps).deliver(call())
    assert outcome.status == "rejected" and len(partner.calls) == 1 and sleeps.waits == []


# --- CircuitBreaker --------------------------------------------------------------------------------
async def test_circuit_opens_after_n_failures_fails_fast_then_half_opens_after_the_cooldown() -> None:
    partner, clock = FakePartner([DOWN, DOWN, DOWN, OK]), Clock()
    breaker = CircuitBreaker(partner, CircuitPolicy(failures=3, cooldown_s=10), clock=clock)
    for _ in range(3):
        assert (await breaker.deliver(call())).status == "error"
    assert breaker.state == "open"
    fast = await breaker.deliver(call())
    assert (fast.ok, fast.retryable, fast.status) == (False, True, "circuit_open")
    assert len(partner.calls) == 3  # not called while open
    clock.t += 9.9
    assert (await breaker.deliver(call())).status == "circuit_open"
    clock.t += 0.1
    assert breaker.state == "half_open"
    assert (await breaker.deliver(call())).ok  # the trial call goes through and closes the circuit
    assert breaker.state == "closed" and len(partner.calls) == 4


async def test_circuit_failed_trial_reopens_and_only_one_trial_runs_at_a_time() -> None:
    gate = asyncio.Event()

    class Slow(FakePartner):
        async def deliver(self, envelope: Envelope) -> Outcome:
            self.calls.append(envelope.idempotency_key)
            await gate.wait()
            return DOWN

    partner, clock = Slow([DOWN]), Clock()
    breaker = CircuitBreaker(partner, CircuitPolicy(failures=1, cooldown_s=5), clock=clock)
    gate.set()
    await breaker.deliver(call())
    assert breaker.state == "open"
    clock.t += 5
    gate.clear()
    trial = asyncio.create_task(breaker.deliver(call()))
    await asyncio.sleep(0)  # the trial is in flight
    assert (await breaker.deliver(call())).status == "circuit_open"  # a second caller fails fast
    gate.set()
    assert (await trial).status == "error"
    assert breaker.state == "open" and len(partner.calls) == 2  # the failed trial opened it again


async def test_circuit_business_rejection_resets_the_count() -> None:
    partner = FakePartner([DOWN, REJECTED, DOWN])
    breaker = CircuitBreaker(partner, CircuitPolicy(failures=2, cooldown_s=5), clock=Clock())
    for _ in range(3):
        await breaker.deliver(call())
    assert breaker.state == "closed"  # the partner answered in between: it is up


# --- Concurrency -----------------------------------------------------------------------------------
async def test_concurrency_limits_attempts_in_flight() -> None:
    running = peak = 0

    class Counting(FakePartner):
        async def deliver(self, envelope: Envelope) -> Outcome:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1
            return OK

    limited = Concurrency(Counting([OK]), 2)
    await asyncio.gather(*(limited.deliver(call(f"k{i}")) for i in range(6)))
    assert peak == 2


# --- Idempotency -----------------------------------------------------------------------------------
async def test_idempotency_records_a_delivery_and_answers_the_next_from_the_record() -> None:
    partner, records = FakePartner([OK]), MemoryLog()
    once = Idempotency(partner, records, partner="resource", now=lambda: T0)
    first = await once.deliver(call())
    assert first.ok and trail.recorded(first) is None
    row = records.rows["call:ord-1:activation"]
    assert (row["partner"], row["order_id"], row["operation"], row["call_id"], row["response"], row["delivered_at"]) \
        == ("resource", "ord-1", "activation", "c-1", {"code": "0"}, T0)
    again = await once.deliver(call())
    assert again.ok and again.response == {"code": "0"} and trail.recorded(again) == row
    assert len(partner.calls) == 1  # not delivered twice


async def test_idempotency_does_not_record_a_failure_and_scopes_keys() -> None:
    records = MemoryLog()
    await Idempotency(FakePartner([DOWN]), records, partner="p").deliver(call())
    assert records.rows == {}
    await Idempotency(FakePartner([OK]), records, partner="p", scope="route:r1", fields={"route": "r1"}).deliver(call())
    assert list(records.rows) == ["route:r1:call:ord-1:activation"]
    assert records.rows["route:r1:call:ord-1:activation"]["route"] == "r1"
    partner = FakePartner([OK])  # another target, same envelope: delivered (no cross-talk)
    assert trail.recorded(await Idempotency(partner, records, partner="p").deliver(call())) is None


# --- Metrics ---------------------------------------------------------------------------------------
def _value(counter: Any, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


async def test_metrics_count_each_attempt_and_each_give_up() -> None:
    attempts_before = _value(DELIVERY_ATTEMPTS, "m-partner", "activation", "error")
    failures_before = _value(DELIVERY_FAILURES, "m-partner", "activation")
    chain = GiveUpMetrics(Retry(AttemptMetrics(FakePartner([DOWN]), "m-partner"), POLICY, sleep=Sleeps()),
                          "m-partner")
    await chain.deliver(call())
    assert _value(DELIVERY_ATTEMPTS, "m-partner", "activation", "error") - attempts_before == POLICY.max_attempts
    assert _value(DELIVERY_FAILURES, "m-partner", "activation") - failures_before == 1


# --- the standard chain ----------------------------------------------------------------------------
async def test_build_chain_composes_the_wrappers_in_order_and_start_stop_reach_the_sink() -> None:
    partner = FakePartner([OK])
    chain = build_chain(partner, ChainSpec(partner="p", policy=POLICY, source_topic="hub.out.p",
                                           records=MemoryLog(), circuit=CircuitPolicy()))
    names = []
    link: Any = chain
    while link is not partner:
        names.append(link.name)
        link = link.next
    assert names == ["idempotency", "give_up_metrics", "retry", "circuit_breaker", "concurrency",
                     "attempt_metrics", "timeout"]
    assert innermost(chain) is partner
    await chain.start()
    await chain.stop()
    assert (partner.started, partner.stopped) == (1, 1)


async def test_chain_open_circuit_fails_fast_inside_the_retries_and_ends_retryable() -> None:
    partner, sleeps, clock = FakePartner([DOWN]), Sleeps(), Clock()
    chain = build_chain(partner, ChainSpec(partner="p", policy=POLICY, source_topic="hub.out.p",
                                           circuit=CircuitPolicy(failures=2, cooldown_s=60), sleep=sleeps,
                                           clock=clock))
    outcome = await chain.deliver(call())
    assert [a.outcome for a in trail.attempts(outcome)] == ["error", "error", "circuit_open", "circuit_open"]
    assert len(partner.calls) == 2 and outcome.retryable


@pytest.mark.parametrize("bad", [{"failures": 0}, {"cooldown_s": -1}])
def test_circuit_policy_refuses_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="circuit"):
        CircuitPolicy(**bad)


async def test_policy_circuit_from_the_partner_yaml_puts_a_breaker_in_the_chain() -> None:
    partner, sleeps = FakePartner([DOWN]), Sleeps()
    policy = RetryPolicy.model_validate({**POLICY.model_dump(), "circuit": {"failures": 1, "cooldown_s": 60}})
    chain = build_chain(partner, ChainSpec(partner="p", policy=policy, source_topic="hub.out.p", sleep=sleeps))
    outcome = await chain.deliver(call())
    assert [a.outcome for a in trail.attempts(outcome)] == ["error"] + ["circuit_open"] * (POLICY.max_attempts - 1)
    assert len(partner.calls) == 1
    assert RetryPolicy().circuit is None  # off unless configured: every attempt calls the partner
    with pytest.raises(ValueError, match="failures"):
        RetryPolicy.model_validate({"circuit": {"failures": 0}})
