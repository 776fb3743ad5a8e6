"""The claim protocol of the Idempotency wrapper (connectors/delivery/idempotency.py, claims.py):
no two deliveries of one key both call the partner, except the one counted ambiguous case. Two
"processes" are two wrappers with different owners over one in-memory ``deliveries``; time is an
injected clock that the injected sleep moves (no real waits)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from pymongo.errors import AutoReconnect

from connectors.base import Outcome
from connectors.delivery import Idempotency, MemoryDeliveryLog, trail
from connectors.delivery.claims import CLAIMED, DELIVERED
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.metrics import DELIVERY_AMBIGUOUS

OK = Outcome(ok=True, status="ok", response={"code": "0", "ref": "R-1"}, duration_ms=3.0)
REJECTED = Outcome(ok=False, retryable=False, status="rejected", error="code='1': 资源不足", duration_ms=2.0)
KEY = "call:ord-1:activation"


def call() -> Envelope:
    return Envelope(type="call.request", source="hub", protocol="rest", correlation_id="ord-1",
                    idempotency_key=KEY, payload={"operation": "activation", "call_id": "c-1", "request": {}})


class Clock:
    """``now`` for the wrappers, and the ``sleep`` that moves it (yielding, so other tasks run)."""

    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)
        self.slept: list[float] = []
        self.ticked = asyncio.Event()

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)
        self.ticked.set()
        await asyncio.sleep(0)


async def _never(seconds: float) -> None:
    """A renewal sleep that does not come back (tests that are not about renewing)."""
    await asyncio.Event().wait()


class Partner:
    """Counts calls; answers ``answer`` once ``go`` is set."""

    name: ClassVar[str] = "partner"

    def __init__(self, answer: Outcome = OK, *, go: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.calls = 0
        self.go = go
        self.called = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, envelope: Envelope) -> Outcome:
        self.calls += 1
        self.called.set()
        if self.go is not None:
            await self.go.wait()
        return self.answer


def wrapper(partner: Partner, records: MemoryDeliveryLog, clock: Clock, owner: str, **kw: Any) -> Idempotency:
    return Idempotency(partner, records, partner="resource", owner=owner, now=clock.now, sleep=clock.sleep,
                       renew_sleep=kw.pop("renew_sleep", _never), **kw)


def _ambiguous() -> float:
    return float(DELIVERY_AMBIGUOUS.labels("resource")._value.get())


async def test_a_second_delivery_waits_for_the_live_owner_and_is_answered_from_its_record() -> None:
    records, clock, go = MemoryDeliveryLog(), Clock(), asyncio.Event()
    partner = Partner(go=go)
    first = asyncio.ensure_future(wrapper(partner, records, clock, "worker-a").deliver(call()))
    await partner.called.wait()
    assert records.rows[KEY]["state"] == CLAIMED and records.rows[KEY]["owner"] == "worker-a"
    second = asyncio.ensure_future(wrapper(partner, records, clock, "worker-b").deliver(call()))
    while len(clock.slept) < 3:  # worker-b is polling the claim (it has not called the partner)
        clock.ticked.clear()
        await clock.ticked.wait()
    assert partner.calls == 1 and not second.done()
    go.set()
    a, b = await asyncio.gather(first, second)
    assert partner.calls == 1  # the partner saw the call once
    assert a.ok and trail.recorded(a) is None
    assert b.ok and b.response == OK.response and trail.recorded(b) is not None
    assert records.rows[KEY]["state"] == DELIVERED
    assert clock.slept[:3] == [0.05, 0.1, 0.2]  # polls back off (no busy loop), at most MAX_POLL_S apart


async def test_waiting_on_a_live_claim_is_bounded_and_raises_retryable_so_nothing_is_acked() -> None:
    records, clock = MemoryDeliveryLog(), Clock()
    await records.claim(KEY, {"owner": "busy", "lease_until": clock.t + timedelta(days=1)})
    partner = Partner()
    with pytest.raises(RetryableError, match="being delivered"):
        await wrapper(partner, records, clock, "worker-b", max_wait_s=10).deliver(call())
    assert partner.calls == 0 and max(clock.slept) == 1.0


async def test_a_lapsed_claim_is_taken_over_after_a_grace_counted_ambiguous_and_sent_once_more() -> None:
    records, clock = MemoryDeliveryLog(), Clock()
    await records.claim(KEY, {"owner": "died", "lease_until": clock.t - timedelta(seconds=1)})
    before = _ambiguous()
    partner = Partner()
    outcome = await wrapper(partner, records, clock, "worker-b", lease_s=15).deliver(call())
    assert outcome.ok and partner.calls == 1
    assert _ambiguous() - before == 1
    row = records.rows[KEY]
    assert (row["state"], row["taken_over_from"], row["response"]) == (DELIVERED, "died", OK.response)
    assert sum(clock.slept) >= 5  # not at first sight: the lapse was seen for one renewal interval (15 s / 3)


async def test_a_call_still_running_in_this_process_is_never_taken_over_however_late_its_renewals() -> None:
    """Overload: the owner's renewals are stuck behind a saturated database (here: they never run) and
    its lease lapses while the call is still running in this very process. A second delivery of the key
    in the same process waits for it instead of calling the partner again."""
    records, clock, go = MemoryDeliveryLog(), Clock(), asyncio.Event()
    partner = Partner(go=go)
    first = asyncio.ensure_future(wrapper(partner, records, clock, "this-process", lease_s=15).deliver(call()))
    await partner.called.wait()
    before = _ambiguous()
    second = asyncio.ensure_future(wrapper(partner, records, clock, "this-process", lease_s=15).deliver(call()))
    try:
        while sum(clock.slept) < 60 and partner.calls == 1:  # four leases: lapsed far longer than the grace
            clock.ticked.clear()
            await asyncio.wait_for(clock.ticked.wait(), 5)
        assert partner.calls == 1 and _ambiguous() == before
        assert records.rows[KEY]["lease_until"] < clock.t and not second.done()
    finally:
        go.set()
    a, b = await asyncio.gather(first, second)
    assert partner.calls == 1 and a.ok and b.ok and trail.recorded(b) is not None


async def test_an_owner_that_renews_during_the_grace_keeps_its_claim_and_nothing_is_sent_twice() -> None:
    """The owner was only cut off from MongoDB: it renews, then stores its answer."""
    records, clock = MemoryDeliveryLog(), Clock()
    await records.claim(KEY, {"owner": "slow", "lease_until": clock.t - timedelta(seconds=1)})
    real_sleep = clock.sleep

    async def owner_comes_back(seconds: float) -> None:
        await real_sleep(seconds)
        if len(clock.slept) == 2:
            assert await records.renew(KEY, "slow", clock.t + timedelta(seconds=15))
        if len(clock.slept) == 4:
            await records.record(KEY, {"response": {"code": "0", "by": "slow"}, "delivered_at": clock.t})

    clock.sleep = owner_comes_back  # type: ignore[method-assign]  # the owner acts between the waiter's polls
    before = _ambiguous()
    partner = Partner()
    outcome = await wrapper(partner, records, clock, "worker-b").deliver(call())
    assert partner.calls == 0 and _ambiguous() == before
    assert outcome.response == {"code": "0", "by": "slow"} and trail.recorded(outcome) is not None


async def test_a_failure_releases_the_claim_so_a_replayed_letter_is_delivered_once() -> None:
    records, clock = MemoryDeliveryLog(), Clock()
    rejected = await wrapper(Partner(REJECTED), records, clock, "worker-a").deliver(call())
    assert not rejected.ok and records.rows == {}  # released: the dead letter can be replayed
    partner = Partner()
    replayed = await wrapper(partner, records, clock, "worker-a").deliver(call())
    again = await wrapper(partner, records, clock, "worker-b").deliver(call())  # replayed twice
    assert replayed.ok and trail.recorded(replayed) is None
    assert again.ok and trail.recorded(again) is not None and partner.calls == 1


class Outage(MemoryDeliveryLog):
    """MongoDB down for the first ``n`` record writes after a successful call."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.down = n

    async def record(self, key: str, fields: dict[str, Any]) -> None:
        if self.down:
            self.down -= 1
            raise AutoReconnect("connection refused")
        await super().record(key, fields)


async def test_a_record_write_that_fails_is_retried_until_stored_and_the_partner_is_not_called_again() -> None:
    records, clock = Outage(4), Clock()
    partner = Partner()
    outcome = await wrapper(partner, records, clock, "worker-a").deliver(call())
    assert outcome.ok and outcome.response == OK.response  # the answer, kept in memory meanwhile
    assert partner.calls == 1 and records.down == 0
    assert clock.slept == [0.2, 0.4, 0.8, 1.6]
    assert records.rows[KEY]["state"] == DELIVERED and records.rows[KEY]["response"] == OK.response
    assert trail.recorded(await wrapper(partner, records, clock, "worker-b").deliver(call())) is not None
    assert partner.calls == 1


class Renewals(MemoryDeliveryLog):
    def __init__(self) -> None:
        super().__init__()
        self.leases: list[datetime] = []
        self.renewed = asyncio.Event()

    async def renew(self, key: str, owner: str, lease_until: datetime) -> bool:
        ok = await super().renew(key, owner, lease_until)
        self.leases.append(lease_until)
        self.renewed.set()
        return ok


async def test_the_owner_renews_its_lease_while_the_call_runs() -> None:
    records, clock = Renewals(), Clock()
    waits: list[float] = []

    async def renew_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > 1:
            await asyncio.Event().wait()  # one renewal is enough to see
        clock.t += timedelta(seconds=seconds)

    partner = Partner(go=records.renewed)  # the partner answers only once the lease was renewed
    first_lease = clock.t + timedelta(seconds=15)
    outcome = await asyncio.wait_for(
        wrapper(partner, records, clock, "worker-a", renew_sleep=renew_sleep).deliver(call()), 5)
    assert outcome.ok and waits[0] == 5.0  # every third of the 15 s lease
    assert records.leases == [first_lease + timedelta(seconds=5)]
