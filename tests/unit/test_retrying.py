"""The named retry policies (hub/retrying.py): attempts and waits of each, run with an injected sleep."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import AutoReconnect
from tenacity import retry_if_exception_type, retry_if_result

from flows.runtime.runner import FlowRunner
from hub.envelope import Envelope
from hub.errors import ValidationFailed
from hub.retry import RetryPolicy
from hub.retrying import (
    AMQP_REQUEUE,
    ENGINE_EVENT,
    REVISION_CONFLICT,
    ROUTE_RELAUNCH,
    Backoff,
    delivery,
)
from tests.unit.test_records import FakeDb, FakeProducer


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def _fail_always(policy: Backoff, sleep: Sleeps) -> int:
    calls = 0
    with pytest.raises(ConnectionError, match="down"):
        async for attempt in policy.retrying(retry_if_exception_type(ConnectionError), sleep=sleep):
            with attempt:
                calls += 1
                raise ConnectionError("down")
    return calls


@pytest.mark.parametrize(("policy", "attempts", "waits"), [
    (ENGINE_EVENT, 3, [0.2, 0.4]),
    (REVISION_CONFLICT, 20, [0.0] * 19),
])
async def test_each_policy_makes_its_attempts_with_its_waits_then_raises_the_last_error(
        policy: Backoff, attempts: int, waits: list[float]) -> None:
    sleep = Sleeps()
    assert await _fail_always(policy, sleep) == attempts
    assert sleep.waits == pytest.approx(waits)
    assert [policy.delay(n) for n in range(1, attempts)] == pytest.approx(waits)


async def test_a_policy_stops_retrying_once_it_works() -> None:
    sleep, calls = Sleeps(), []
    async for attempt in ENGINE_EVENT.retrying(retry_if_exception_type(ConnectionError), sleep=sleep):
        with attempt:
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError("down")
    assert len(calls) == 3 and sleep.waits == pytest.approx([0.2, 0.4])


async def test_an_error_the_policy_does_not_retry_is_raised_at_once() -> None:
    sleep = Sleeps()
    with pytest.raises(ValueError):
        async for attempt in ENGINE_EVENT.retrying(retry_if_exception_type(ConnectionError), sleep=sleep):
            with attempt:
                raise ValueError("a bug, not an outage")
    assert sleep.waits == []


async def test_amqp_requeue_waits_the_routes_retry_delay_once() -> None:
    sleep = Sleeps()
    await AMQP_REQUEUE.with_delay(2.5).pause(sleep=sleep)
    await AMQP_REQUEUE.with_delay(0.0).pause(sleep=sleep)
    assert sleep.waits == [2.5, 0.0]


async def test_delivery_follows_the_partners_policy_and_answers_the_last_outcome() -> None:
    policy = RetryPolicy(max_attempts=4, backoff_initial_s=0.5, backoff_max_s=1.5, backoff_multiplier=3, jitter_s=0.2)
    sleep, answers = Sleeps(), []

    async def call() -> str:
        answers.append("busy")
        return "busy"

    retrying = delivery(policy).retrying(retry_if_result(lambda r: r == "busy"), sleep=sleep,
                                         retry_error_callback=lambda state: state.outcome.result())
    assert await retrying(call) == "busy" and len(answers) == 4
    for wait, base in zip(sleep.waits, [0.5, 1.5, 1.5], strict=True):  # 0.5 · 3ⁿ capped at 1.5, + jitter
        assert base <= wait <= base + 0.2


def _runner(db: Any, producer: Any) -> FlowRunner:
    runtime: Any = SimpleNamespace(db=db, producer=producer, settings=SimpleNamespace(topic_prefix="hub"),
                                   partners={})
    runner = FlowRunner(runtime, library=None, fs=None, callback_base_url="http://hub")  # type: ignore[arg-type]
    runner._store = SimpleNamespace(forget=lambda order_id: None)  # type: ignore[assignment]
    return runner


EVENT = Envelope(type="call.result", source="group", protocol="rest", correlation_id="ord-9", idempotency_key="r9")


async def test_the_engine_waits_out_an_outage_under_engine_outage() -> None:
    db, producer = FakeDb(), FakeProducer()
    runner = _runner(db, producer)
    runner.sleep = sleep = Sleeps()
    tries: list[str] = []

    async def mongo_away_for_8_tries(env: Envelope) -> None:
        tries.append(env.id)
        if len(tries) <= 8:
            raise AutoReconnect("mongo down")

    runner._handle = mongo_away_for_8_tries  # type: ignore[method-assign]
    await runner.handle(EVENT)
    assert len(tries) == 9 and sleep.waits == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert db["dead_letters"].docs == []  # an outage is waited out, never dead-lettered


async def test_an_event_that_fails_otherwise_is_tried_under_engine_event_then_dead_lettered() -> None:
    db, producer = FakeDb(), FakeProducer()
    runner = _runner(db, producer)
    runner.sleep = sleep = Sleeps()
    tries: list[str] = []

    async def broken(env: Envelope) -> None:
        tries.append(env.id)
        raise KeyError("a bug")

    runner._handle = broken  # type: ignore[method-assign]
    await runner.handle(EVENT)
    assert len(tries) == 3 and sleep.waits == pytest.approx([0.2, 0.4])
    [letter] = db["dead_letters"].docs
    assert letter["order_id"] == "ord-9" and "a bug" in letter["error"]
    assert letter["origin"]["agent"] == "flow-engine"


async def test_an_event_the_engine_refuses_is_dead_lettered_at_once() -> None:
    db, producer = FakeDb(), FakeProducer()
    runner = _runner(db, producer)
    runner.sleep = sleep = Sleeps()

    async def refused(env: Envelope) -> None:
        raise ValidationFailed("call_result event for an order that was never received")

    runner._handle = refused  # type: ignore[method-assign]
    await runner.handle(EVENT)
    assert sleep.waits == [] and len(db["dead_letters"].docs) == 1


def test_a_failed_route_start_is_tried_again_after_1_2_4_polls_at_most_every_30_s() -> None:
    relaunch = ROUTE_RELAUNCH.with_delay(2.0)  # the route manager's poll interval
    assert relaunch.attempts is None  # a route is tried until its partner is back
    assert [relaunch.delay(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert ROUTE_RELAUNCH.with_delay(45.0).delay(1) == 45.0  # a slow poll is never shortened
