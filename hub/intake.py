"""Idempotent intake: the ``emit`` every inbound connector calls.

Order of work, and why:

1. **admission** (before anything is written): the envelope must survive the trip it is about to
   make — it is serialised and parsed back exactly as the router will (:func:`check_envelope`),
   and an order must have a flow that can run it (the :data:`Admit` check the composition root
   injects from the loaded blueprints). Whatever fails here fails *now*, as a 400 / SOAP Fault /
   rejected record, never after the partner was told 202.
2. **claim** the idempotency key: insert a pending claim (in ``intake_keys``, ``_id`` =
   ``claim:<key>``, holder and time; unique) *before* producing. Exactly one concurrent delivery wins the insert, in
   this process or any other; identical keys inside one process are coalesced first
   (single-flight), so they do not even reach the database. A lost claim means the key is taken:
   its accepted record (``intake_keys``) is the answer.
3. the winner **produces** the envelope with acks=all. Broker down ⇒ the winner deletes its claim
   and the caller answers 503: nothing is recorded, the partner retries.
4. the winner marks the key accepted by inserting its record in ``intake_keys`` (with the envelope,
   ``state: accepted``). Losers wait (bounded) for that record, then answer with the winner's ids
   and ``duplicate=True``. A claim older than the lease with no accepted record belongs to a holder
   that died between claim and answer: the next delivery takes it over.

Why a claim document next to the record, and not a state field flipped to "accepted": the happy
path is then two *inserts* and no read or update. On the embedded SecantusDB an update costs ~4×
a batched insert (≈1,000 updates/s vs ≈9,000 inserted documents/s in ``insert_many`` batches of
50), and its cost is per command, so claims and records share one batcher: one ``insert_many``
carries new requests' claims and finished requests' records. A claim stays (it is what makes a
later redelivery a duplicate). Keys journaled without a claim — by batch sources
(``record_many``) or before claims existed — are caught when the winner's record insert meets
theirs: the answer is then the first delivery's ids, and the one stray envelope carries the same
key (the engine applies it once).

Claims, lookups and records are group-committed across concurrent requests (``hub/batching.py``).

Because the record keeps the envelope, an accepted order survives a broker that loses its topics
(the embedded broker keeps them in memory): :func:`unconsumed` finds accepted envelopes whose
order never reached the engine, and the worker re-sends them at start (``flows/agents.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic_core import PydanticSerializationError
from pymongo.errors import BulkWriteError, PyMongoError

from hub import tracing
from hub.batching import MicroBatcher
from hub.envelope import Envelope
from hub.errors import RetryableError, ValidationFailed
from hub.jsonlimits import DEFAULT_MAX_DEPTH, TooDeep, inspect
from hub.kafka import EnvelopeProducer

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000
ACCEPTED = "accepted"
CLAIM_PREFIX = "claim:"
CLAIM_LEASE = timedelta(seconds=30)
"""A ``pending`` claim older than this belongs to a holder that died; it may be taken over."""
MAX_RECORD_BYTES = 1_048_576  # aiokafka's max_request_size default (hub/kafka.py leaves it)
RECORD_OVERHEAD = 512  # record batch framing, generously
WAIT_FOR_WINNER_S = 10.0
"""How long a losing delivery waits for the winner's answer before answering 503 (retry)."""

Admit = Callable[[Envelope], None]
"""Admission check injected by the composition root (``app/runtime.py``): raises
:class:`~hub.errors.ValidationFailed` for an envelope nothing could process (e.g. an order whose
product/scenario has no blueprint). ``None`` admits everything."""


class StoreUnavailable(RetryableError):
    """MongoDB did not answer; the delivery can be retried by the partner."""


@dataclass(frozen=True)
class Accepted:
    """The answer a source gives its partner: the ids, and whether this was a redelivery."""

    order_id: str
    envelope_id: str
    duplicate: bool = False


class _Duplicate(Exception):
    """Insert lost on the unique index: someone recorded this key first."""


def check_envelope(envelope: Envelope) -> None:
    """Serialise the envelope and parse it back exactly as the router will (``Envelope.from_kafka``);
    raise ValidationFailed if that fails (lone surrogates, values pydantic cannot round-trip,
    nesting past the JSON parser's limit, a record the producer would refuse as too large) — so no
    accepted envelope is later dead-lettered as "not a valid envelope", and nothing permanent is
    answered as a retryable 503."""
    try:
        value = envelope.kafka_value()
    except (PydanticSerializationError, UnicodeError, ValueError) as exc:
        raise ValidationFailed("the order cannot be encoded as JSON (e.g. an unpaired surrogate in a string)",
                               [{"field": "(body)", "message": str(exc)[:200], "type": "unencodable"}]) from exc
    headers = envelope.kafka_headers()
    size = len(value) + len(envelope.kafka_key()) + sum(len(k) + len(v) for k, v in headers) + RECORD_OVERHEAD
    if size > MAX_RECORD_BYTES:  # the producer would refuse it on every retry: a 503 loop, not a 400
        raise ValidationFailed(f"the order is {size} bytes as an envelope; the broker takes at most {MAX_RECORD_BYTES}",
                               [{"field": "(body)", "message": "too large as an envelope", "type": "too_large"}])
    Envelope.from_kafka(value, headers)


class Intake:
    def __init__(self, db: AsyncIOMotorDatabase[Any], producer: EnvelopeProducer, *, admit: Admit | None = None,
                 max_depth: int = DEFAULT_MAX_DEPTH, lease: timedelta = CLAIM_LEASE,
                 wait_s: float = WAIT_FOR_WINNER_S) -> None:
        self._keys = db["intake_keys"]
        self._producer = producer
        self._admit = admit
        self._max_depth = max_depth
        self._journal = True  # keep the envelope in the record (configure)
        self._lease = lease
        self._wait_s = wait_s
        self._holder = uuid.uuid4().hex  # this process, on its claims (diagnostics)
        self._inflight: dict[str, asyncio.Future[Accepted]] = {}
        self._lookups: MicroBatcher[str, dict[str, Any] | None] = MicroBatcher(self._find_many)
        # claims and records go through one batcher: one insert command carries both kinds
        self._records: MicroBatcher[dict[str, Any], bool] = MicroBatcher(self._insert_many)

    # --- batched database work -------------------------------------------------------------
    async def _find_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        try:
            found = {
                doc["_id"]: doc
                async for doc in self._keys.find({"_id": {"$in": list(set(keys))}}, {"order_id": 1, "envelope_id": 1})
            }
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc
        return [found.get(k) for k in keys]

    async def _insert_many(self, records: Sequence[dict[str, Any]]) -> list[bool | BaseException]:
        results: list[bool | BaseException] = [True] * len(records)
        try:
            await self._keys.insert_many(list(records), ordered=False)
        except BulkWriteError as exc:
            for err in exc.details.get("writeErrors", []):
                results[err["index"]] = _Duplicate() if err.get("code") == DUPLICATE_KEY else StoreUnavailable(
                    err.get("errmsg", "write error"))
        except PyMongoError as exc:
            return [StoreUnavailable(str(exc))] * len(records)
        return results

    def _record(self, topic: str, envelope: Envelope) -> dict[str, Any]:
        return {
            "_id": envelope.idempotency_key,
            "order_id": envelope.correlation_id,
            "envelope_id": envelope.id,
            "topic": topic,
            "source": envelope.source,
            "state": ACCEPTED,
            "created_at": datetime.now(UTC),
            **({"envelope": envelope.model_dump(mode="json")} if self._journal else {}),
        }

    def _claim(self, envelope: Envelope) -> dict[str, Any]:
        return {"_id": CLAIM_PREFIX + envelope.idempotency_key, "holder": self._holder,
                "claimed_at": datetime.now(UTC), "envelope_id": envelope.id}

    async def record_many(self, topic: str, envelopes: Sequence[Envelope], chunk: int = 1000) -> None:
        """Record envelopes a batch source (a file) already put on Kafka, so they are journaled for
        recovery like single deliveries; keys recorded before are left as they were."""
        for i in range(0, len(envelopes), chunk):
            records = [self._record(topic, env) for env in envelopes[i:i + chunk]]
            try:
                await self._keys.insert_many(records, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise StoreUnavailable(f"could not record intake keys: {exc.details}") from exc
            except PyMongoError as exc:
                raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc

    # --- admission -----------------------------------------------------------------------
    def configure(self, *, admit: Admit | None, max_depth: int, journal: bool = True) -> None:
        """Set by the composition root once plugins are known (``app/runtime.py``). ``journal``:
        keep the envelope in the record (``Settings.journal_events``: only where the broker may
        lose it — otherwise Kafka is the event's one durable copy, docs/flows.md)."""
        self._admit, self._max_depth, self._journal = admit, max_depth, journal

    def admit(self, envelope: Envelope) -> None:
        """Raise ValidationFailed if this envelope must not be accepted (see module doc, step 1).
        Also called by batch sources on each record before they publish (``routes/pipeline.py``).
        The depth check backs up the sources' own scan (``hub/jsonlimits.py``) for payloads built
        from XML or by transforms: stored in MongoDB, a payload must stay under BSON's 100 levels
        and its field names free of NUL."""
        depth, nul_key = inspect(envelope.payload)
        if depth > self._max_depth:
            raise TooDeep(self._max_depth, "the order")
        if nul_key is not None:
            raise ValidationFailed("a field name contains a NUL character, which cannot be stored",
                                   [{"field": nul_key.replace("\x00", "\\0"), "message": "NUL in field name",
                                     "type": "nul_in_key"}])
        check_envelope(envelope)
        if self._admit is not None:
            self._admit(envelope)

    # --- emit ------------------------------------------------------------------------------
    async def emit(self, topic: str, envelope: Envelope) -> Accepted:
        # the intake's span (every source's: REST, SOAP, files, AMQP): the envelope on Kafka names it
        # as its parent, so the router's span, in the worker, links to it
        with tracing.hop(envelope.trace, "hub.intake", envelope.type, envelope.correlation_id,
                         kind="server") as span:
            envelope.trace = span.trace
            accepted = await self._emit_traced(topic, envelope)
            if accepted.duplicate:
                span.outcome = "duplicate"
            return accepted

    async def emit_many(self, topic: str, envelopes: Sequence[Envelope]) -> list[Accepted | BaseException]:
        """``emit`` for a batch (the AMQP source's): one result per envelope, in order — its
        :class:`Accepted`, or the exception ``emit`` would have raised for it.

        Why: ``emit`` per message costs a span, a single-flight future, two batcher submits and a Kafka
        send of its own; here the batch's claims are one insert, its envelopes one pipelined
        produce (``send_many``) and its records one insert. The guarantees are ``emit``'s: a key is
        produced only by the delivery that won its claim, and answered only once it is on Kafka.
        Whatever is not the plain case — a key claimed or recorded already, a key twice in the batch
        or being accepted by a concurrent request of this process, a claim that could not be
        written — takes ``emit`` itself, which waits for the winner, takes a dead holder's claim
        over, or answers the duplicate."""
        results: list[Accepted | BaseException | None] = [None] * len(envelopes)
        with contextlib.ExitStack() as spans:
            hops: dict[int, tracing.Hop] = {}
            fresh: list[int] = []
            seen: set[str] = set()
            for i, envelope in enumerate(envelopes):
                key = envelope.idempotency_key
                if key in seen or key in self._inflight:
                    continue  # the single path below (single flight)
                try:
                    self.admit(envelope)
                except ValidationFailed as exc:
                    results[i] = exc
                    continue
                seen.add(key)
                hop = spans.enter_context(tracing.hop(envelope.trace, "hub.intake", envelope.type,
                                                      envelope.correlation_id, kind="server"))
                envelope.trace = hop.trace
                hops[i] = hop
                fresh.append(i)
            loop = asyncio.get_running_loop()
            futures = {i: loop.create_future() for i in fresh}
            for i in fresh:
                self._inflight[envelopes[i].idempotency_key] = futures[i]
            failed: BaseException | None = None
            try:
                await self._accept_batch(topic, envelopes, fresh, results)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                for i in fresh:
                    fut = futures[i]
                    del self._inflight[envelopes[i].idempotency_key]
                    outcome = results[i] if failed is None or results[i] is not None else failed
                    if outcome is None:  # claim lost: emit answers it below, in a span of its own
                        hops[i].outcome = "duplicate"
                    elif isinstance(outcome, BaseException):
                        fut.set_exception(outcome)
                        fut.exception()  # retrieved: nobody else may have waited
                        hops[i].outcome = "error"
                    else:
                        fut.set_result(outcome)
        rest = [i for i, r in enumerate(results) if r is None]
        answers = await asyncio.gather(*(self.emit(topic, envelopes[i]) for i in rest), return_exceptions=True)
        for i, answer in zip(rest, answers, strict=True):
            results[i] = answer
            waiting = futures.get(i)  # a concurrent delivery of the key may be waiting on the batch's future
            if waiting is not None and not waiting.done():
                if isinstance(answer, BaseException):
                    waiting.set_exception(answer)
                    waiting.exception()
                else:
                    waiting.set_result(answer)
        return answered(results)

    async def _accept_batch(self, topic: str, envelopes: Sequence[Envelope], fresh: list[int],
                            results: list[Accepted | BaseException | None]) -> None:
        """Claim, produce and record ``fresh`` (indexes into ``envelopes``) as one batch; claims this
        process did not win are left ``None`` in ``results`` for ``emit``."""
        if not fresh:
            return
        claimed = await self._insert_many([self._claim(envelopes[i]) for i in fresh])
        winners = []
        for i, ok in zip(fresh, claimed, strict=True):
            if ok is True:
                winners.append(i)
            elif isinstance(ok, BaseException) and not isinstance(ok, _Duplicate):  # not stored: retry later
                results[i] = ok
        if not winners:
            return
        batch = [envelopes[i] for i in winners]
        try:
            await self._producer.send_many(topic, batch)  # raises BrokerUnavailable
        except BaseException as exc:
            await self._release_many([env.idempotency_key for env in batch])
            for i in winners:
                results[i] = exc
            if not isinstance(exc, Exception):
                raise
            return
        recorded = await self._insert_many([self._record(topic, env) for env in batch])
        for i, ok in zip(winners, recorded, strict=True):
            envelope = envelopes[i]
            results[i] = Accepted(envelope.correlation_id, envelope.id)
            if isinstance(ok, _Duplicate):  # recorded meanwhile by a batch source: the first delivery's ids
                winner = await self._keys.find_one({"_id": envelope.idempotency_key})
                if winner is not None:
                    results[i] = Accepted(winner["order_id"], winner["envelope_id"], duplicate=True)
            elif isinstance(ok, BaseException):  # on Kafka, not recorded: as in _produce_as_winner
                log.warning("intake key %s produced but not recorded (%s)", envelope.idempotency_key, ok)

    async def _emit_traced(self, topic: str, envelope: Envelope) -> Accepted:
        self.admit(envelope)
        key = envelope.idempotency_key
        running = self._inflight.get(key)
        if running is not None:  # same key already being accepted in this process: share its answer
            return replace(await asyncio.shield(running), duplicate=True)
        fut: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            accepted = await self._emit_once(topic, envelope)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        else:
            fut.set_result(accepted)
            return accepted
        finally:
            del self._inflight[key]

    async def _emit_once(self, topic: str, envelope: Envelope) -> Accepted:
        key = envelope.idempotency_key
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        delay = 0.02
        while True:
            try:
                await self._records.submit(self._claim(envelope))
                return await self._produce_as_winner(topic, envelope)
            except _Duplicate:
                pass
            first = await self._lookups.submit(key)
            if first is not None:  # accepted (by whoever held the claim)
                return Accepted(first["order_id"], first["envelope_id"], duplicate=True)
            claim = await self._find_claim(key)
            if claim is not None and await self._take_over(envelope, claim):
                log.warning("intake key %s: took over a claim pending since %s (its holder died)", key,
                            claim.get("claimed_at"))
                return await self._produce_as_winner(topic, envelope)
            if claim is None:
                continue  # released after a failed produce: claim it ourselves
            # pending with a live holder (another process): wait for its answer
            if loop.time() + delay > deadline:
                raise StoreUnavailable(f"intake key {key} is still being accepted by another delivery; retry")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _find_claim(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._keys.find_one({"_id": CLAIM_PREFIX + key})
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc

    async def _take_over(self, envelope: Envelope, seen: dict[str, Any]) -> bool:
        claimed = seen.get("claimed_at")
        if claimed is None:
            return False
        if claimed.tzinfo is None:
            claimed = claimed.replace(tzinfo=UTC)
        if datetime.now(UTC) - claimed < self._lease:
            return False
        mine = self._claim(envelope)
        del mine["_id"]
        try:  # conditional on the claim we saw: of several takers, one wins
            result = await self._keys.update_one({"_id": seen["_id"], "claimed_at": seen["claimed_at"]},
                                                 {"$set": mine})
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc
        return bool(result.modified_count)

    async def _produce_as_winner(self, topic: str, envelope: Envelope) -> Accepted:
        key = envelope.idempotency_key
        try:
            await self._producer.send(topic, envelope)  # raises BrokerUnavailable
        except BaseException:
            await self._release(key)
            raise
        try:
            await self._records.submit(self._record(topic, envelope))
        except _Duplicate:
            winner = await self._keys.find_one({"_id": key})
            assert winner is not None
            log.info("intake key %s was recorded meanwhile by a batch source; answered with %s", key,
                     winner["envelope_id"])
            return Accepted(winner["order_id"], winner["envelope_id"], duplicate=True)
        except StoreUnavailable as exc:
            # The envelope is on Kafka (accepted); only its record is missing. Redeliveries wait for
            # it, then take the claim over after the lease (the engine applies an order once).
            log.warning("intake key %s produced but not recorded (%s)", key, exc)
        return Accepted(envelope.correlation_id, envelope.id)

    async def _release_many(self, keys: Sequence[str]) -> None:
        """A batch's produce failed: remove its claims (one delete), as :meth:`_release` does one."""
        try:
            await self._keys.delete_many({"_id": {"$in": [CLAIM_PREFIX + k for k in keys]}, "holder": self._holder})
        except PyMongoError as exc:
            log.warning("%d intake claims not released (%s); they lapse after %ss", len(keys), exc,
                        self._lease.total_seconds())

    async def _release(self, key: str) -> None:
        """Produce failed: remove our claim so nothing is recorded and the partner's retry wins."""
        try:
            await self._keys.delete_one({"_id": CLAIM_PREFIX + key, "holder": self._holder})
        except PyMongoError as exc:
            log.warning("intake key %s: claim not released (%s); it lapses after %ss", key, exc,
                        self._lease.total_seconds())


def answered(results: Sequence[Accepted | BaseException | None]) -> list[Accepted | BaseException]:
    """A batch's results once every slot is filled (``emit_many``, ``RouteEmit.publish_many``): a slot
    still empty is a bug in the batch path, not an answer to give a source."""
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise AssertionError(f"batch results {missing} were never filled")
    return [r for r in results if r is not None]


async def iter_unconsumed(db: AsyncIOMotorDatabase[Any], *, within: timedelta, batch: int = 500
                          ) -> AsyncIterator[list[tuple[str, Envelope]]]:
    """(topic, envelope) of every order envelope accepted in the last ``within`` whose order has
    no document in ``orders`` yet — i.e. it may only have lived on the broker — one chunk of at most
    ``batch`` at a time. Re-sending them is safe: order ids are deterministic and the engine creates
    an order once. Chunks, not one list: after a restart in the middle of a big file every queued
    order of it is "unconsumed", and holding them all at once cost hundreds of MB (issue 8, item 5)."""
    since = datetime.now(UTC) - within
    cursor = db["intake_keys"].find(
        {"created_at": {"$gte": since}, "envelope.type": "order.received"}, {"order_id": 1, "topic": 1, "envelope": 1}
    ).batch_size(batch)  # the server's default batch is up to 16 MB of documents, decoded at once
    chunk: list[dict[str, Any]] = []

    async def lost() -> list[tuple[str, Envelope]]:
        ids = [r["order_id"] for r in chunk]
        known = {d["_id"] async for d in db["orders"].find({"_id": {"$in": ids}}, {"_id": 1})}
        out = [(r["topic"], Envelope.model_validate(r["envelope"])) for r in chunk if r["order_id"] not in known]
        chunk.clear()
        return out

    async for record in cursor:
        if record.get("envelope"):
            chunk.append(record)
        if len(chunk) >= batch:
            yield await lost()
    if chunk:
        yield await lost()


async def unconsumed(db: AsyncIOMotorDatabase[Any], *, within: timedelta, batch: int = 500
                     ) -> list[tuple[str, Envelope]]:
    """All of :func:`iter_unconsumed` in one list (small sets: tools and tests)."""
    return [item async for found in iter_unconsumed(db, within=within, batch=batch) for item in found]
