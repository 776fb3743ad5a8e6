"""Dead letters: where a message goes when it cannot be processed or delivered — never dropped.

A dead letter keeps the original envelope (or the raw bytes when the record was not even an
envelope), the error and its class, every attempt with time and outcome, and where it came from
(``origin``: partner, route, file, topic, partition, offset — always present, ``null`` only where a
field cannot apply). It is written to MongoDB first (``dead_letters``, indexed for listing and
filtering, the source of truth for replay) and then to the Kafka topic ``{source_topic}.dlq`` (for
stream consumers and tools), keyed by order id when there is one — so one order's letters stay on
one partition, next to its envelopes — else by a stable origin key (``route/file``,
``topic/partition/offset``), with self-describing headers (``hub-schema: deadletter/v1``).

Statuses: ``dead`` (pending: needs an operator) → ``replaying`` (claimed by a replay, with a lease:
a lapsed lease counts as ``dead`` again, see :func:`pending_query`) → ``replayed``; or
``discarded`` (an operator gave up on it); or ``resolved`` (the system saw a later delivery with the
same idempotency key succeed — e.g. the engine's own retry round of a gated report — so nobody has
to act on it).
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymongo import ASCENDING, DESCENDING, IndexModel

from hub import topics
from hub.db import declare_indexes
from hub.envelope import Envelope, new_id
from hub.kafka import EnvelopeProducer
from hub.metrics import DEAD_LETTERS, DLQ_ACTIONS

log = logging.getLogger(__name__)

SCHEMA = "deadletter/v1"
COLLECTION = "dead_letters"
ACTIONS = "dlq_actions"  # the audit trail (indexes declared in app/admin/queries.py)
ORIGIN_FIELDS = ("partner", "route", "file", "topic", "partition", "offset")
Status = Literal["dead", "replaying", "replayed", "discarded", "resolved"]
PENDING_STATUSES = ["dead", "replaying"]
declare_indexes(
    COLLECTION,
    IndexModel([("source_topic", ASCENDING), ("created_at", DESCENDING)], name="by_topic_time"),
    IndexModel([("partner", ASCENDING), ("created_at", DESCENDING)], name="by_partner_time"),
    IndexModel([("order_id", ASCENDING)], name="by_order"),
    IndexModel([("error_class", ASCENDING), ("created_at", DESCENDING)], name="by_error_time"),
    IndexModel([("status", ASCENDING), ("created_at", DESCENDING)], name="by_status_time"),
    IndexModel([("idempotency_key", ASCENDING)], name="by_idempotency_key"),
)


def pending_query(now: datetime | None = None) -> dict[str, Any]:
    """What "pending" means everywhere (list, replay, discard, gauges): ``dead``, or claimed by a
    replay whose lease lapsed — its sender died before the send was acknowledged, so nothing says
    it was sent and it must not stay hidden."""
    # one clause, no ``$or``: a letter's lease is unset whenever it is not ``replaying``, and SecantusDB
    # scans the whole collection for an ``$or`` even next to an ``_id $in`` (6 s per 100-letter claim)
    return {"status": {"$in": PENDING_STATUSES}, "lease_until": {"$not": {"$gt": now or datetime.now(UTC)}}}


class Attempt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    outcome: str = Field(examples=["error", "timeout", "rejected"])
    error: str | None = None
    status: str | None = None
    duration_ms: float | None = None


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_id)
    source_topic: str
    dlq_topic: str = ""
    partner: str | None = None
    order_id: str | None = None
    idempotency_key: str | None = Field(default=None, description="the envelope's; resolves the letter on success")
    envelope: dict[str, Any] | None = Field(default=None, description="the original envelope")
    raw_value_b64: str | None = Field(default=None, description="the record when it was not an envelope")
    error: str
    error_class: str
    attempts: list[Attempt] = Field(default_factory=list)
    origin: dict[str, Any] = Field(default_factory=dict, description="partner, route, file, topic, partition, "
                                   "offset (always present), plus worker, stage, agent where known")
    status: Status = "dead"
    replay_count: int = 0
    claim: str | None = Field(default=None, description="token of the replay holding the lease")
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    lease_until: datetime | None = None
    last_action: dict[str, Any] | None = Field(default=None, description="last replay/discard/resolve: who, when, why")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _fill_origin(self) -> DeadLetter:
        """Fill the origin from what the letter already says, so no caller has to repeat it: the topic,
        the partner named by the topic (``{p}.in.{partner}``), the route and file the source put in the
        envelope's headers."""
        o = self.origin
        headers = (self.envelope or {}).get("headers") or {}
        o["topic"] = o.get("topic") or self.source_topic
        o["partner"] = (o.get("partner") or self.partner or topics.partner_of(self.source_topic)
                        or (self.envelope or {}).get("source") or "hub")
        o["route"] = o.get("route") or headers.get("hub-route")
        o["file"] = o.get("file") or headers.get("file")
        for name in ORIGIN_FIELDS:
            o.setdefault(name, None)
        self.partner = self.partner or o["partner"]
        if self.envelope and not self.idempotency_key:
            self.idempotency_key = self.envelope.get("idempotency_key")
        return self

    @classmethod
    def for_envelope(
        cls, source_topic: str, envelope: Envelope, error: BaseException | str, **kw: Any
    ) -> DeadLetter:
        # an intake rejection has no order: its correlation id (``reject-<route>``) is a placeholder
        order_id = None if envelope.type == "intake.rejected" else envelope.correlation_id
        return cls(
            source_topic=source_topic,
            partner=kw.pop("partner", None) or envelope.source,
            order_id=order_id,
            envelope=envelope.model_dump(mode="json"),
            error=str(error),
            error_class=kw.pop("error_class", None) or (type(error).__name__ if isinstance(error, BaseException)
                                                       else "Error"),
            **kw,
        )

    @classmethod
    def for_raw(cls, source_topic: str, value: bytes | None, error: BaseException, *, key: bytes | None = None,
                **kw: Any) -> DeadLetter:
        """A record that is not an envelope; on the hub's topics its Kafka key is still the order id."""
        return cls(
            source_topic=source_topic,
            order_id=kw.pop("order_id", None) or _text(key),
            raw_value_b64=base64.b64encode(value or b"").decode(),
            error=str(error),
            error_class=type(error).__name__,
            **kw,
        )

    def kafka_key(self) -> bytes:
        """Order id where one exists, else a stable key of where it came from (never the letter id,
        which would scatter one file's or one partition's letters over the ``.dlq`` topic)."""
        o = self.origin
        if self.order_id:
            key = self.order_id
        elif o.get("route"):
            key = "/".join(str(p) for p in (o["route"], o.get("file") or o.get("ref")) if p)
        elif o.get("partition") is not None and o.get("offset") is not None:
            key = f"{o['topic']}/{o['partition']}/{o['offset']}"
        else:
            key = self.id
        return key.encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Self-describing: a consumer can route and filter without parsing the value."""
        h = {"hub-schema": SCHEMA, "content-type": "application/json", "hub-dead-letter-id": self.id,
             "hub-source-topic": self.source_topic, "hub-error-class": self.error_class,
             "hub-partner": self.partner, "hub-order-id": self.order_id, "hub-idempotency-key": self.idempotency_key,
             "hub-route": self.origin.get("route"), "hub-file": self.origin.get("file")}
        return [(k, str(v).encode()) for k, v in h.items() if v is not None]


def _text(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


class DeadLetters:
    def __init__(self, db: AsyncIOMotorDatabase[Any], producer: EnvelopeProducer) -> None:
        self.collection = db[COLLECTION]
        self.producer = producer

    async def publish(self, letter: DeadLetter) -> DeadLetter:
        """MongoDB first (replay reads from there), then the ``.dlq`` topic."""
        letter.dlq_topic = topics.dead_letter(letter.source_topic)
        doc = letter.model_dump()
        doc["_id"] = doc.pop("id")
        await self.collection.insert_one(doc)
        DEAD_LETTERS.labels(letter.source_topic, letter.error_class).inc()
        try:
            await self.producer.send_raw(letter.dlq_topic, letter.model_dump_json().encode(),
                                         key=letter.kafka_key(), headers=letter.kafka_headers())
        except Exception as exc:  # the MongoDB record is the source of truth; the topic copy is best effort
            log.warning("dead letter %s stored but not copied to %s: %s", letter.id, letter.dlq_topic, exc)
        log.error(
            "dead-lettered %s from %s: %s (%s)", letter.order_id or letter.id, letter.source_topic,
            letter.error_class, letter.error,
        )
        return letter

    async def resolve(self, idempotency_key: str, *, who: str, detail: str) -> int:
        """Mark the pending letters of ``idempotency_key`` ``resolved``: a later delivery of the same
        call succeeded, so nothing is left for an operator (nor for a replay) to do. Recorded in
        ``dlq_actions`` as done by the system. One indexed read when there is nothing to resolve —
        the usual case, since this runs after every successful delivery."""
        now = datetime.now(UTC)
        q = {"idempotency_key": idempotency_key, **pending_query(now)}
        found = {d["_id"]: d async for d in self.collection.find(q, {"source_topic": 1, "order_id": 1})}
        if not found:
            return 0
        token = new_id()
        done = await self.collection.update_many(
            {"_id": {"$in": list(found)}, **pending_query(now)},
            {"$set": {"status": "resolved", "last_action": {"action": "resolve", "who": who, "at": now,
                                                            "reason": detail, "token": token}},
             "$unset": {"claim": "", "claimed_by": "", "claimed_at": "", "lease_until": ""}})
        ids = list(found)
        if done.modified_count != len(ids):  # a replay claimed some meanwhile: record only ours
            ids = [d["_id"] async for d in self.collection.find({"_id": {"$in": ids}, "last_action.token": token},
                                                                {"_id": 1})]
        if ids:
            await self.collection.database[ACTIONS].insert_many([
                {"_id": new_id(), "at": now, "who": who, "action": "resolve", "result": "ok", "dead_letter_id": i,
                 "topic": found[i].get("source_topic"), "order_id": found[i].get("order_id"), "detail": detail,
                 "replay_count": None, "patch": None, "reason": None, "batch": None} for i in ids], ordered=False)
            DLQ_ACTIONS.labels("resolve", "ok").inc(len(ids))
            log.info("resolved %d dead letter(s) of %s: %s", len(ids), idempotency_key, detail)
        return len(ids)
