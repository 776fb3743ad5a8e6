"""The one replay path: dead-letter replay, ``hub orders retry`` and call re-call (重调 / 批量重调) all
end here.

Replaying a dead letter means: take its original envelope, optionally apply a JSON patch to the
payload, bump ``headers["replay-count"]`` (refused above ``max_replays`` so a message that keeps
failing cannot loop forever), and produce it — same ``id`` and ``idempotency_key`` — to the topic it
was dead-lettered from, with acks=all. The delivery agent checks ``deliveries`` by idempotency key
before calling a partner, so a replay never repeats a side effect that already happened.

Order of writes, and why:

1. **claim** in MongoDB (``status: dead → replayed`` with a claim token, one ``update_many`` per
   chunk): two operators replaying the same filter at once cannot both send a letter;
2. **produce** to Kafka (acks=all); if the broker refuses, the claim is reverted (``status: dead``)
   and the action is recorded as ``failed`` — the letter can be replayed again;
3. **record** every action (who, when, what, result) in ``dlq_actions`` (``hub dlq history``).

Bulk replays go in chunks (bounded memory and one MongoDB round trip per chunk, not per letter),
with an optional rate limit in envelopes per second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, Field, ValidationError
from pymongo import ASCENDING

from flows.documents import CALLS, ORDERS
from hub import topics
from hub.admin.patch import PatchOp, apply_patch, dump_patch
from hub.admin.queries import ACTIONS, CallFilter, DeadLetterFilter, masker
from hub.deadletter import COLLECTION as DEAD_LETTERS
from hub.envelope import Envelope, new_id
from hub.errors import HubError
from hub.kafka import EnvelopeProducer
from hub.metrics import DLQ_ACTIONS
from hub.partners import Partner

REPLAY_COUNT = "replay-count"
REPLAY_OF = "replay-of"
DEFAULT_MAX_REPLAYS = 5
FAILED_OUTCOMES = ("failed", "dead_lettered")


class NotFound(HubError):
    """The dead letter, order or call does not exist (→ 404)."""


class Refused(HubError):
    """The action is not possible in the current state (→ 409)."""


class ActionResult(BaseModel):
    """The outcome of one action on one dead letter."""

    dead_letter_id: str
    action: Literal["replay", "discard"]
    result: Literal["ok", "dry_run", "refused", "failed"]
    detail: str | None = None
    topic: str | None = None
    order_id: str | None = None
    replay_count: int | None = None
    envelope: dict[str, Any] | None = Field(default=None, description="dry run: what would be sent (masked)")


class Summary(BaseModel):
    matched: int = 0
    ok: int = 0
    dry_run: int = 0
    refused: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    per_second: float | None = None
    results: list[ActionResult] = Field(default_factory=list, description="first results, for display")

    def add(self, r: ActionResult, keep: int) -> None:
        setattr(self, r.result, getattr(self, r.result) + 1)
        if len(self.results) < keep:
            self.results.append(r)


class RateLimiter:
    """At most ``rate`` acquisitions per second, evenly spaced (no bursts that hit a recovering partner)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class ReplayService:
    def __init__(self, db: AsyncIOMotorDatabase, producer: EnvelopeProducer, partners: dict[str, Partner],
                 *, max_replays: int = DEFAULT_MAX_REPLAYS, chunk: int = 100, concurrency: int = 64) -> None:
        self.db = db
        self.letters = db[DEAD_LETTERS]
        self.actions = db[ACTIONS]
        self.producer = producer
        self.mask = masker(partners)
        self.max_replays = max_replays
        self.chunk = chunk
        self.concurrency = concurrency

    # --- replay -----------------------------------------------------------------------------
    async def select(self, flt: DeadLetterFilter, limit: int | None = None) -> list[str]:
        """Ids of the replayable (``dead``) letters matching ``flt``, oldest first."""
        q = flt.model_copy(update={"status": "dead"}).query()
        cursor = self.letters.find(q, {"_id": 1}).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        if limit:
            cursor = cursor.limit(limit)
        return [d["_id"] async for d in cursor]

    async def replay(
        self,
        ids: list[str],
        *,
        who: str,
        patch: list[PatchOp] | None = None,
        dry_run: bool = False,
        rate: float | None = None,
        reason: str | None = None,
        force: bool = False,
        progress: Callable[[ActionResult], None] | None = None,
        keep: int = 100,
    ) -> Summary:
        """Replay the given dead letters; ``progress`` is called once per letter.

        Chunks are pipelined: while one chunk is produced to Kafka, the next is read and claimed in
        MongoDB. ``force`` also re-sends letters already marked ``replayed`` (e.g. a replay killed
        between claim and produce); the delivery agent's idempotency check keeps that harmless.
        """
        ids = list(dict.fromkeys(ids))  # a letter named twice is replayed once
        summary = Summary(matched=len(ids))
        limiter = RateLimiter(rate)
        started = time.perf_counter()
        batch = new_id()
        chunks = [ids[i:i + self.chunk] for i in range(0, len(ids), self.chunk)]

        def stage(n: int) -> asyncio.Future[_Staged] | None:
            if n >= len(chunks):
                return None
            return asyncio.ensure_future(self._stage(chunks[n], who=who, patch=patch, dry_run=dry_run,
                                                     reason=reason, batch=batch, force=force))

        pending = stage(0)
        try:
            for n in range(len(chunks)):
                assert pending is not None
                staged = await pending
                pending = stage(n + 1)
                for r in await self._send(staged, who=who, patch=patch, limiter=limiter, reason=reason, batch=batch):
                    summary.add(r, keep)
                    if progress:
                        progress(r)
        finally:
            if pending is not None:  # stopped early: give the next chunk's claims back
                await self._unclaim(await pending)
        summary.elapsed_s = round(time.perf_counter() - started, 3)
        sent = summary.ok + summary.dry_run
        summary.per_second = round(sent / summary.elapsed_s, 1) if summary.elapsed_s and sent else None
        return summary

    async def replay_one(self, letter_id: str, *, who: str, patch: list[PatchOp] | None = None,
                         dry_run: bool = False, reason: str | None = None, force: bool = False) -> ActionResult:
        if await self.letters.count_documents({"_id": letter_id}, limit=1) == 0:
            raise NotFound(f"no dead letter {letter_id}")
        summary = await self.replay([letter_id], who=who, patch=patch, dry_run=dry_run, reason=reason, force=force)
        return summary.results[0]

    def _prepare(self, doc: dict[str, Any] | None, letter_id: str, patch: list[PatchOp] | None,
                 force: bool) -> Envelope | ActionResult:
        def refuse(detail: str) -> ActionResult:
            return ActionResult(dead_letter_id=letter_id, action="replay", result="refused", detail=detail,
                                order_id=(doc or {}).get("order_id"), topic=(doc or {}).get("source_topic"))

        if doc is None:
            return refuse("no such dead letter")
        if doc.get("status") not in _replayable(force):
            hint = " (force re-sends)" if doc.get("status") == "replayed" else ""
            return refuse(f"status is {doc.get('status')}, only dead letters are replayed{hint}")
        if not doc.get("envelope"):
            return refuse("the record was not an envelope (raw bytes kept): fix at the source and discard")
        if topics.is_dead_letter(doc["source_topic"]):
            return refuse(f"source topic {doc['source_topic']} is itself a dead-letter topic")
        try:
            env = Envelope.model_validate(doc["envelope"])
            payload = apply_patch(env.payload, patch) if patch else env.payload
            count = max(_int(env.headers.get(REPLAY_COUNT)), int(doc.get("replay_count") or 0)) + 1
            if count > self.max_replays:
                return refuse(f"replayed {count - 1} times already (cap {self.max_replays}): discard or fix")
            headers = {**env.headers, REPLAY_COUNT: str(count), REPLAY_OF: letter_id}
            return Envelope.model_validate(
                {**env.model_dump(), "payload": payload, "headers": headers, "attempt": 0}
            )
        except (HubError, ValidationError) as exc:
            return refuse(f"cannot rebuild the envelope: {exc}")

    async def _stage(self, ids: list[str], *, who: str, patch: list[PatchOp] | None, dry_run: bool,
                     reason: str | None, batch: str, force: bool) -> _Staged:
        """Read, rebuild and (unless dry run) claim one chunk."""
        fields = {"envelope": 1, "status": 1, "source_topic": 1, "order_id": 1, "replay_count": 1}
        staged = _Staged(ids=ids, docs={d["_id"]: d async for d in self.letters.find({"_id": {"$in": ids}}, fields)})
        for letter_id in ids:
            prepared = self._prepare(staged.docs.get(letter_id), letter_id, patch, force)
            if isinstance(prepared, ActionResult):
                staged.results[letter_id] = prepared
            else:
                staged.ready[letter_id] = prepared
        if dry_run:
            for letter_id, env in staged.ready.items():
                staged.results[letter_id] = ActionResult(
                    dead_letter_id=letter_id, action="replay", result="dry_run",
                    topic=staged.docs[letter_id]["source_topic"], order_id=env.correlation_id,
                    replay_count=int(env.headers[REPLAY_COUNT]), envelope=self.mask(env.model_dump(mode="json")),
                )
            staged.ready.clear()
        elif staged.ready:
            staged.token = new_id()
            last = {"action": "replay", "who": who, "at": _now(), "reason": reason, "batch": batch,
                    "claim": staged.token}
            claim = await self.letters.update_many(
                {"_id": {"$in": list(staged.ready)}, "status": {"$in": _replayable(force)}},
                {"$set": {"status": "replayed", "last_action": last}, "$inc": {"replay_count": 1}},
            )
            if claim.modified_count == len(staged.ready):  # the usual case: nobody else touched this chunk
                staged.claimed = set(staged.ready)
            else:
                won = self.letters.find({"_id": {"$in": list(staged.ready)}, "last_action.claim": staged.token},
                                        {"_id": 1})
                staged.claimed = {d["_id"] async for d in won}
        return staged

    async def _unclaim(self, staged: _Staged, ids: list[str] | None = None) -> None:
        """Give claims back (status dead again) for letters that were not produced."""
        back = list(staged.claimed if ids is None else ids)
        if back and staged.token:
            await self.letters.update_many({"_id": {"$in": back}, "last_action.claim": staged.token},
                                           {"$set": {"status": "dead"}, "$inc": {"replay_count": -1}})

    async def _send(self, staged: _Staged, *, who: str, patch: list[PatchOp] | None, limiter: RateLimiter,
                    reason: str | None, batch: str) -> list[ActionResult]:
        """Produce the claimed envelopes of one chunk (acks=all), then record every result."""
        results = staged.results
        failed: list[str] = []
        sem = asyncio.Semaphore(self.concurrency)

        async def send(letter_id: str, env: Envelope) -> None:
            topic = staged.docs[letter_id]["source_topic"]
            base = {"dead_letter_id": letter_id, "action": "replay", "topic": topic, "order_id": env.correlation_id,
                    "replay_count": int(env.headers[REPLAY_COUNT])}
            if letter_id not in staged.claimed:
                results[letter_id] = ActionResult(**base, result="refused", detail="replayed or discarded meanwhile")
                return
            async with sem:
                await limiter.acquire()
                try:
                    await self.producer.send(topic, env)
                except Exception as exc:
                    failed.append(letter_id)
                    results[letter_id] = ActionResult(**base, result="failed", detail=f"not produced: {exc}")
                    return
            results[letter_id] = ActionResult(**base, result="ok")

        await asyncio.gather(*(send(i, env) for i, env in staged.ready.items()))
        await self._unclaim(staged, failed)
        ordered = [results[i] for i in staged.ids]
        await self._record([r for r in ordered if r.result != "dry_run"], who=who, patch=patch, reason=reason,
                           batch=batch)
        return ordered

    async def _record(self, results: list[ActionResult], *, who: str, patch: list[PatchOp] | None,
                      reason: str | None, batch: str | None) -> None:
        if not results:
            return
        at = _now()
        patch_doc = self._masked_patch(patch)
        docs = []
        for r in results:
            DLQ_ACTIONS.labels(r.action, r.result).inc()
            docs.append({"_id": new_id(), "at": at, "who": who, "action": r.action, "result": r.result,
                         "dead_letter_id": r.dead_letter_id, "topic": r.topic, "order_id": r.order_id,
                         "detail": r.detail, "replay_count": r.replay_count, "patch": patch_doc,
                         "reason": reason, "batch": batch})
        await self.actions.insert_many(docs, ordered=False)

    def _masked_patch(self, patch: list[PatchOp] | None) -> list[dict[str, Any]] | None:
        """The patch as recorded: values at sensitive paths are masked like every listing."""
        if not patch:
            return None
        out = []
        for op in dump_patch(patch):
            if "value" in op:
                dotted = op["path"].lstrip("/").replace("/", ".")
                probe = self.mask(_nest(dotted, op["value"]))
                op["value"] = _dig(probe, dotted)
            out.append(op)
        return out

    # --- discard ----------------------------------------------------------------------------
    async def discard(self, letter_id: str, *, who: str, reason: str) -> ActionResult:
        """Mark a dead letter as handled without sending it; the reason is mandatory."""
        if not reason.strip():
            raise Refused("a reason is required to discard a dead letter")
        doc = await self.letters.find_one_and_update(
            {"_id": letter_id, "status": "dead"},
            {"$set": {"status": "discarded", "last_action": {"action": "discard", "who": who, "at": _now(),
                                                             "reason": reason}}},
        )
        if doc is None:
            current = await self.letters.find_one({"_id": letter_id}, {"status": 1})
            if current is None:
                raise NotFound(f"no dead letter {letter_id}")
            result = ActionResult(dead_letter_id=letter_id, action="discard", result="refused",
                                  detail=f"status is {current.get('status')}, only dead letters are discarded")
        else:
            result = ActionResult(dead_letter_id=letter_id, action="discard", result="ok",
                                  topic=doc.get("source_topic"), order_id=doc.get("order_id"))
        await self._record([result], who=who, patch=None, reason=reason, batch=None)
        return result

    # --- orders retry and call re-call: find the dead letters, then the same replay -------------
    async def letter_for_order(self, order_id: str) -> str:
        """The dead letter of the current stage's failed call (else the order's newest dead letter)."""
        order = await self.db[ORDERS].find_one({"_id": order_id}, {"current_stage": 1, "status": 1})
        if order is None:
            raise NotFound(f"no order {order_id}")
        q: dict[str, Any] = {"order_id": order_id, "outcome": {"$in": list(FAILED_OUTCOMES)},
                             "dead_letter_id": {"$ne": None}}
        if order.get("current_stage"):
            q["stage"] = order["current_stage"]
        async for call in self.db[CALLS].find(q, {"dead_letter_id": 1}).sort("started_at", -1):
            if await self.letters.count_documents({"_id": call["dead_letter_id"], "status": "dead"}, limit=1):
                return str(call["dead_letter_id"])
        newest = await self.letters.find_one({"order_id": order_id, "status": "dead"}, {"_id": 1},
                                             sort=[("created_at", -1)])
        if newest is None:
            stage = order.get("current_stage") or "-"
            raise Refused(f"order {order_id} (stage {stage}) has no failed call waiting for a retry")
        return str(newest["_id"])

    async def letters_for_calls(self, call_ids: list[str] | None = None, flt: CallFilter | None = None,
                                limit: int | None = None) -> list[str]:
        """Dead-letter ids behind failed calls, given by id or by a filter (re-call one or a batch)."""
        q: dict[str, Any] = {"outcome": {"$in": list(FAILED_OUTCOMES)}, "dead_letter_id": {"$ne": None}}
        if call_ids is not None:
            q["call_id"] = {"$in": call_ids}
        if flt is not None:
            q.update({k: v for k, v in flt.query().items() if k != "outcome"})
        cursor = self.db[CALLS].find(q, {"dead_letter_id": 1}).sort("started_at", ASCENDING)
        if limit:
            cursor = cursor.limit(limit)
        ids = list(dict.fromkeys([c["dead_letter_id"] async for c in cursor]))
        if call_ids is not None and not ids:
            raise NotFound(f"no failed call with a dead letter among {', '.join(call_ids)}")
        return ids


@dataclass
class _Staged:
    """One chunk between claim and produce."""

    ids: list[str]
    docs: dict[str, dict[str, Any]]
    results: dict[str, ActionResult] = field(default_factory=dict)
    ready: dict[str, Envelope] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    token: str | None = None


def _replayable(force: bool) -> list[str]:
    return ["dead", "replayed"] if force else ["dead"]


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _now() -> datetime:
    return datetime.now(UTC)


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data
