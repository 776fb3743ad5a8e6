"""Micro-batching ("group commit") for per-request database work — the hub's one batching module.

Why: under load, 50 concurrent intake requests each doing one MongoDB lookup and one insert cost
100 round trips; batched, they cost 2 (``find {_id: {$in: …}}`` and ``insert_many``). The engine's
order saves and the delivery agent's lookups gain the same way (measured on the embedded
SecantusDB, which is CPU-bound per request). Each caller still awaits *its* result, so nothing is
acknowledged on Kafka before its document is stored.

One batch is in flight at a time per batcher (which keeps one order's writes in order). A batch
is sent ``max_delay_s`` after its first item arrived (``0``: as soon as the previous batch
returned, so at low load a single request goes straight through), or at once when ``max_batch``
items are waiting. :class:`BulkWriter` (15 ms) and :class:`BulkReader` (10 ms) are batchers over
one collection.

**Group commit** (:class:`BulkWriter`, when the collection's write concern is the hub's default
``{j: true}``, hub/db.py ``durable_writes``): the batch is written with ``w: 1`` and then *one*
journaled write to ``journal_sync`` makes it durable. Why: SecantusDB honours ``j: true`` per
*statement* — every update of a bulk is its own WiredTiger commit with ``sync=on`` (an fsync), while
an ``insert_many`` shares one commit. The log is one sequential stream, so the journaled commit of
the marker, sent after the batch was answered, syncs every record before it: callers are answered
only after it, so "acknowledged means journaled" still holds (tests/integration/test_mongo_durability.py
kills the database after batched writes). Measured with 60 replaces of a 4 KB document, 3 indexes,
2-core VM at load ≈ 8: 10.9 ms per document journaled one by one, 2.9 ms with the group commit,
2.6 ms not journaled at all. Real MongoDB: a ``j: true`` write waits for the journal up to its own
position too, so the same holds there (and a URI that chooses its own write concern is left alone).
"""

from __future__ import annotations

import asyncio
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from motor.motor_asyncio import AsyncIOMotorCollection
from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure
from pymongo.write_concern import WriteConcern

T = TypeVar("T")
R = TypeVar("R")

WRITE_DELAY_S = 0.015  # the engine's order saves and call upserts
JOURNAL_SYNC = "journal_sync"  # one tiny document per writer: its journaled write makes a batch durable
READ_DELAY_S = 0.01  # the delivery agent's "already delivered?" lookups
IN_CHUNK = 100  # ids per ``_id $in`` query (find_by_ids)


class MicroBatcher(Generic[T, R]):
    """``await batcher.submit(item)`` → the result ``handler`` returned for that item.

    ``handler(items)`` returns one result per item, in order; a result that is an exception
    instance is raised to that item's caller only. If ``handler`` itself raises, every caller
    of that batch gets the error.
    """

    def __init__(self, handler: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
                 max_batch: int = 256, max_delay_s: float = 0.0) -> None:
        self._handler = handler
        self._max = max_batch
        self._delay = max_delay_s
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._first_at = 0.0  # loop time the oldest pending item arrived
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None  # referenced: an unreferenced task may be collected

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        if not self._pending:
            self._first_at = loop.time()
        self._pending.append((item, fut))
        if len(self._pending) >= self._max:
            self._full.set()
        if self._task is None:
            self._task = loop.create_task(self._drain(), name="micro-batcher")
        return await fut

    async def _wait_for_company(self) -> None:
        """Let items that arrive within the window (or in this loop turn) join the batch."""
        if self._delay <= 0:
            await asyncio.sleep(0)
            return
        remaining = self._first_at + self._delay - asyncio.get_running_loop().time()
        if remaining > 0 and len(self._pending) < self._max:
            self._full.clear()
            try:
                await asyncio.wait_for(self._full.wait(), remaining)
            except TimeoutError:
                pass

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._wait_for_company()
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                if self._pending:
                    self._first_at = asyncio.get_running_loop().time()
                try:
                    results = await self._handler([item for item, _ in batch])
                except BaseException as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            self._task = None


@dataclass(frozen=True)
class _Check:
    """How one write of a batch learns whether it won: ``version`` (the v1 engine's optimistic
    replace: the stored number equals the one written), ``rev`` (the stored revision token is the
    fresh one this write set) or ``insert`` (the insert raised no duplicate-key error)."""

    kind: Literal["version", "rev", "insert"]
    _id: Any
    token: Any = None


WriteOp = tuple[ReplaceOne[dict[str, Any]] | UpdateOne | InsertOne[dict[str, Any]], _Check | None]
DUPLICATE_KEY = 11000


def new_rev() -> str:
    """A fresh revision token: unique per write, so no two writers can ever store the same one."""
    return uuid.uuid4().hex


class BulkWriter:
    """Concurrent single-document writes to one collection → one unordered ``bulk_write``.

    A guarded write is told whether *its* write won. :meth:`replace_if_rev` is the one to use: each
    write stores a fresh revision token (``rev``) under the filter ``{_id, rev: expected}``, so a
    loser is found by reading the stored token back — it is the winner's, never the loser's.
    :meth:`replace_versioned` is what the v1 engine used; nothing in the hub calls it any more — it
    stays as the before-picture tests/integration/test_revision_token.py proves the bug on (strict
    xfail): two racers of one order both write ``version = N+1``, so a loser whose rival stored the
    same number is told it won.
    """

    def __init__(self, collection: AsyncIOMotorCollection[dict[str, Any]], max_ops: int = 256,
                 max_delay_s: float = WRITE_DELAY_S) -> None:
        self.collection = collection
        self._batcher: MicroBatcher[WriteOp, bool] = MicroBatcher(self._write, max_ops, max_delay_s)
        self._target, self._journal = _group_commit(collection)

    async def _sync(self) -> None:
        """Make the batch just written durable (group commit; nothing to do without one)."""
        if self._journal is not None:
            await self._journal.sync()

    async def replace_versioned(self, doc: dict[str, Any], expected_version: int) -> bool:
        """Replace ``doc`` if its stored ``version`` is ``expected_version``; False on a conflict."""
        check = _Check("version", doc["_id"], doc["version"])
        return await self._batcher.submit((ReplaceOne({"_id": doc["_id"], "version": expected_version}, doc), check))

    async def replace_if_rev(self, doc: dict[str, Any], expected_rev: str | None) -> bool:
        """Replace ``doc`` if its stored ``rev`` is ``expected_rev``; True only if this write won.

        ``doc["rev"]`` is set to a fresh token first (the caller keeps it for its next write). Why a
        token and not ``version + 1``: two writers that read the same revision write *different*
        tokens, so the stored one names the winner, in one batch or across batches."""
        doc["rev"] = new_rev()
        return await self._batcher.submit((ReplaceOne({"_id": doc["_id"], "rev": expected_rev}, doc),
                                           _Check("rev", doc["_id"], doc["rev"])))

    async def update_if_rev(self, _id: Any, expected_rev: str | None, fields: dict[str, Any]) -> str | None:
        """``$set`` ``fields`` on the document if its stored ``rev`` is ``expected_rev``, with a fresh
        token; the new token when this write won, None when another writer came first."""
        rev = new_rev()
        op = UpdateOne({"_id": _id, "rev": expected_rev}, {"$set": {**fields, "rev": rev}})
        won = await self._batcher.submit((op, _Check("rev", _id, rev)))
        return rev if won else None

    async def insert_new(self, doc: dict[str, Any]) -> bool:
        """Insert ``doc``; False when its ``_id`` exists (insert-first: the duplicate key is the
        answer, no read before). A document without ``rev`` gets a fresh one, so it can be replaced
        with :meth:`replace_if_rev` next."""
        doc.setdefault("rev", new_rev())
        return await self._batcher.submit((InsertOne(doc), _Check("insert", doc["_id"])))

    async def insert_or_set(self, _id: Any, fields: dict[str, Any]) -> None:
        """Write a record that is usually new as an insert, and ``$set`` it only when it exists (a
        redelivered answer). Why not always the upsert: on SecantusDB an insert shares its batch's one
        commit and skips the update path (query planning over every index, decode, diff), ≈ 3× cheaper
        per document (bench note in docs/flows.md, "Throughput")."""
        if not await self._batcher.submit((InsertOne({"_id": _id, **fields}), _Check("insert", _id))):
            await self.upsert(_id, fields)

    async def insert_if_missing(self, _id: Any, fields: dict[str, Any]) -> bool:
        """Insert the record unless one exists (which is kept as it is); True if this one was."""
        return await self._batcher.submit((InsertOne({"_id": _id, **fields}), _Check("insert", _id)))

    async def upsert(self, _id: Any, fields: dict[str, Any]) -> None:
        await self._batcher.submit((UpdateOne({"_id": _id}, {"$set": fields}, upsert=True), None))

    async def _write(self, batch: Sequence[WriteOp]) -> list[bool | BaseException]:
        errors: dict[int, dict[str, Any]] = {}
        try:
            result = await self._target.bulk_write([op for op, _ in batch], ordered=False)
            applied = result.matched_count + result.upserted_count + result.inserted_count
        except BulkWriteError as exc:  # unordered: the other writes were applied
            if exc.details.get("writeConcernErrors"):
                raise
            errors = {e["index"]: e for e in exc.details.get("writeErrors", [])}
            applied = -1
        await self._sync()  # before anyone is told: what a caller learns it won is journaled
        answers: list[bool | BaseException | None] = []
        for i, (_, check) in enumerate(batch):
            error = errors.get(i)
            if error is None:
                answers.append(True if check is None or check.kind == "insert" else None)
            elif check is not None and check.kind == "insert" and error.get("code") == DUPLICATE_KEY:
                answers.append(False)
            else:
                answers.append(OperationFailure(error.get("errmsg", "write failed"), error.get("code"), error))
        undecided = [c for (_, c), a in zip(batch, answers, strict=True) if a is None and c is not None]
        if applied >= len(batch) or not undecided:  # every write matched: every guarded one won
            return [True if a is None else a for a in answers]
        # some guarded replace may have lost a race: the stored version / token says which
        stored = {d["_id"]: d async for d in self.collection.find(
            {"_id": {"$in": list({c._id for c in undecided})}}, {"version": 1, "rev": 1})}
        out: list[bool | BaseException] = []
        for (_, check), answer in zip(batch, answers, strict=True):
            if answer is not None or check is None:
                out.append(True if answer is None else answer)
            else:
                out.append(stored.get(check._id, {}).get(check.kind) == check.token)
        return out


class JournalSync:
    """One journaled write that makes every batch written before it durable. The writers of one
    database share it: batches that finished while a sync was on its way wait for the next one,
    which covers them all (a sync sent after a batch was answered is behind it in the log)."""

    def __init__(self, database: Any) -> None:
        self._marker = database[JOURNAL_SYNC]
        self._id = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._batcher: MicroBatcher[None, None] = MicroBatcher(self._write)

    async def sync(self) -> None:
        await self._batcher.submit(None)

    async def _write(self, waiting: Sequence[None]) -> list[None]:
        await self._marker.update_one({"_id": self._id}, {"$inc": {"syncs": 1}}, upsert=True)
        return [None] * len(waiting)


_JOURNALS: weakref.WeakKeyDictionary[Any, dict[str, JournalSync]] = weakref.WeakKeyDictionary()


def _group_commit(collection: Any) -> tuple[Any, JournalSync | None]:
    """(where the batch is written, the database's journal sync or None). Only for the hub's own
    default ``{j: true}``: a write concern the URI chose (``w: majority``…) is used as it is."""
    concern = getattr(collection, "write_concern", None)
    if concern is None or concern.document != {"j": True}:
        return collection, None
    database = collection.database
    per_db = _JOURNALS.setdefault(database.client, {})
    journal = per_db.get(database.name)
    if journal is None:
        journal = per_db[database.name] = JournalSync(database)
    return collection.with_options(write_concern=WriteConcern(w=1)), journal


async def find_by_ids(collection: AsyncIOMotorCollection[dict[str, Any]], ids: Iterable[Any],
                      projection: dict[str, Any] | None = None, chunk: int = IN_CHUNK) -> AsyncIterator[dict[str, Any]]:
    """The documents of ``ids`` (each id asked once), in ``_id $in`` queries of at most ``chunk`` ids.

    Why chunks: SecantusDB matches every document it found against the whole ``$in`` list again
    (and re-validates the list per document), so one query is quadratic in its length. Measured on
    the embedded server (2026-12-03): 256 found ids 74.6 ms in one query, 25.6 ms in chunks of 16;
    up to ~100 ids it makes no difference. Found with py-spy: the real-time report sweep's single
    lookup of ~1,000 keys was 22 % of the database's samples in ``python -m bench.flow``."""
    unique = list(dict.fromkeys(ids))
    for i in range(0, len(unique), chunk):
        async for doc in collection.find({"_id": {"$in": unique[i:i + chunk]}}, projection):
            yield doc


class BulkReader:
    """Concurrent ``find_one({"_id": x})`` lookups on one collection → one ``_id $in`` query."""

    def __init__(self, collection: AsyncIOMotorCollection[dict[str, Any]], max_ids: int = 256,
                 max_delay_s: float = READ_DELAY_S, projection: dict[str, Any] | None = None) -> None:
        self.collection = collection
        self.projection = projection  # the fields every caller needs (an order document is large)
        self._batcher: MicroBatcher[Any, dict[str, Any] | None] = MicroBatcher(self._find, max_ids, max_delay_s)

    async def get(self, _id: Any) -> dict[str, Any] | None:
        return await self._batcher.submit(_id)

    async def _find(self, ids: Sequence[Any]) -> list[dict[str, Any] | None]:
        found = {d["_id"]: d async for d in find_by_ids(self.collection, ids, self.projection)}
        return [found.get(_id) for _id in ids]
