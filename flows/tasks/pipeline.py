"""The bulk path of wireless parameter tasks (P36.1 push, P36.2 watch): batches, chunks, pushes.

One ``task_batches`` document per batch (an ARAN file or a REST batch) with its counters, and per
``chunk_size`` tasks one chunk, which is what is written (one insert), pushed (one NMS call) and judged
(one alarm query) — about six MongoDB operations per 500 tasks instead of a dozen per order on the
per-order engine (docs/network-tasks.md has the figures). A chunk is two documents: its tasks in
``task_chunk_tasks`` (written once, never updated) and its small state in ``task_chunks`` (updated at
each step): the embedded store rewrites a whole document on every update, and a 500-task document
cost ~60 ms per update against ~5 ms for the state alone. A chunk's life:

    pending ──push──▶ watching ──(watch_s later) alarm query + P36.2 judgement──▶ done
       └─ NMS refused it, or unreachable max_attempts times ──▶ failed

Durable at each arrow: a chunk is in MongoDB before ``add`` returns (so the SFTP file may be moved to
processed/, the REST batch answered 202); a restart pushes ``pending`` chunks again (the chunk id is
the NMS's idempotency key) and the watcher finds ``watching`` chunks by ``watch_at``. The in-memory
queue is bounded: a file is read no faster than the NMS takes it, so memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from flows.tasks.anomaly import judge
from flows.tasks.model import TASKS, WirelessTaskSettings
from flows.tasks.nms import NmsClient
from hub.db import declare_indexes
from hub.errors import PermanentError, RetryableError
from hub.stopping import cancel_until_done

log = logging.getLogger(__name__)

BATCHES = "task_batches"
CHUNKS = "task_chunks"
PAYLOADS = "task_chunk_tasks"
declare_indexes(CHUNKS, IndexModel([("status", ASCENDING), ("watch_at", ASCENDING)], name="by_status_watch"),
                IndexModel([("batch", ASCENDING)], name="by_batch"))
declare_indexes(BATCHES, IndexModel([("created_at", ASCENDING)], name="by_created"))
BACKOFF_MAX_S = 30.0


class TaskPipeline:
    """Takes batches of tasks in and pushes them out; one per process (``start`` / ``stop``)."""

    def __init__(self, db: Any, nms: NmsClient, settings: WirelessTaskSettings, *, max_attempts: int = 5,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.nms = nms
        self.settings = settings
        self.max_attempts = max_attempts
        self.clock = clock
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=settings.window * 4)
        self._tasks: list[asyncio.Task[None]] = []
        self._queued: set[str] = set()
        self.idle = asyncio.Event()
        self._watching = 0  # chunks pushed and not judged yet: the watch loop sleeps while there are none
        self._wake = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._worker(), name=f"wireless-push-{i}")
                       for i in range(self.settings.window)]
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="wireless-watch"))
        self._tasks.append(asyncio.create_task(self._recover(), name="wireless-recover"))

    async def stop(self) -> None:
        await asyncio.gather(*(cancel_until_done(task) for task in self._tasks))
        self._tasks = []
        await self.nms.close()

    # --- intake ------------------------------------------------------------------------------------
    async def open_batch(self, batch_id: str, source: str, **info: Any) -> bool:
        """Create the batch document; False when it exists (a batch sent again, a file read again)."""
        now = self.clock()
        doc = {"_id": batch_id, "source": source, "account": self.settings.account, "status": "running",
               "closed": False, "received": 0, "ok": 0, "failed": 0, "anomalies": 0, "chunks": 0,
               "chunks_done": 0, "created_at": now, "updated_at": now, **info}
        try:
            await self.db[BATCHES].insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def add(self, batch_id: str, tasks: list[dict[str, str]], first: int) -> int:
        """Store ``tasks`` (the batch's tasks from position ``first``) as chunks and queue them; returns
        how many were new. Chunk ids come from the position, so the same tasks sent again add nothing."""
        size = self.settings.chunk_size
        parts = [tasks[i:i + size] for i in range(0, len(tasks), size)]
        if not parts:
            return 0
        ids = [f"{batch_id}:{first + i * size:09d}" for i in range(len(parts))]
        await self._insert_new(PAYLOADS, [{"_id": cid, "tasks": part} for cid, part in zip(ids, parts, strict=True)])
        states: list[dict[str, Any]] = [
            {"_id": cid, "batch": batch_id, "status": "pending", "attempts": 0, "size": len(part), "ok": 0,
             "failed": [], "anomalies": []} for cid, part in zip(ids, parts, strict=True)]
        fresh = await self._insert_new(CHUNKS, states)  # a chunk is new when its state is
        new = [{**state, "tasks": part} for state, part in zip(states, parts, strict=True) if state["_id"] in fresh]
        count = sum(len(c["tasks"]) for c in new)
        if new:
            await self.db[BATCHES].update_one({"_id": batch_id}, {
                "$inc": {"received": count, "chunks": len(new)}, "$set": {"updated_at": self.clock()}})
            TASKS.labels("received").inc(count)
        for chunk in new:
            await self._enqueue(chunk)
        return count

    async def _insert_new(self, collection: str, docs: list[dict[str, Any]]) -> set[str]:
        """Insert ``docs``; the ids that were not there yet (a duplicate id is not an error)."""
        ids = {d["_id"] for d in docs}
        try:
            await self.db[collection].insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise RetryableError(f"task chunks not stored: {errors[:1]}") from exc
            ids -= {docs[e["index"]]["_id"] for e in errors}
        return ids

    async def close_batch(self, batch_id: str) -> None:
        """No more tasks will come for this batch: it completes when its last chunk is done."""
        doc = await self.db[BATCHES].find_one_and_update(
            {"_id": batch_id}, {"$set": {"closed": True, "updated_at": self.clock()}},
            return_document=ReturnDocument.AFTER)
        await self._maybe_complete(doc)

    async def _enqueue(self, chunk: dict[str, Any]) -> None:
        if chunk["_id"] in self._queued:
            return
        self._queued.add(chunk["_id"])
        self.idle.clear()
        await self.queue.put(chunk)

    # --- push ----------------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            chunk = await self.queue.get()
            try:
                await self._push(chunk)
            except Exception:  # a MongoDB hiccup: the chunk stays pending, the recovery pass takes it again
                log.exception("wireless chunk %s: push not recorded", chunk["_id"])
            finally:
                self._queued.discard(chunk["_id"])
                self.queue.task_done()
                if self.queue.empty() and not self._queued:
                    self.idle.set()

    async def _push(self, chunk: dict[str, Any]) -> None:
        attempts = int(chunk.get("attempts", 0))
        delay = 0.5
        while True:
            attempts += 1
            try:
                answer = await self.nms.push(chunk["batch"], chunk["_id"], chunk["tasks"])
                break
            except RetryableError as exc:
                if attempts >= self.max_attempts:
                    await self._give_up(chunk, f"{exc} (after {attempts} attempts)", attempts)
                    return
                log.warning("wireless chunk %s: %s; retrying in %.1f s", chunk["_id"], exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
            except PermanentError as exc:
                await self._give_up(chunk, str(exc), attempts)
                return
        failed = [{"task_id": str(f.get("taskId", "")), "code": str(f.get("code", "")),
                   "message": str(f.get("message", ""))} for f in answer.get("failed") or () if isinstance(f, dict)]
        ok = len(chunk["tasks"]) - len(failed)
        now = self.clock()
        await self.db[CHUNKS].update_one({"_id": chunk["_id"]}, {"$set": {
            "status": "watching", "attempts": attempts, "ok": ok, "failed": failed, "pushed_at": now,
            "watch_at": now + self.settings.anomaly.watch_s}})
        await self.db[BATCHES].update_one({"_id": chunk["batch"]}, {
            "$inc": {"ok": ok, "failed": len(failed)}, "$set": {"updated_at": now}})
        TASKS.labels("ok").inc(ok)
        TASKS.labels("failed").inc(len(failed))
        self._watching += 1
        self._wake.set()

    async def _give_up(self, chunk: dict[str, Any], error: str, attempts: int) -> None:
        log.error("wireless chunk %s: %d tasks not pushed: %s", chunk["_id"], len(chunk["tasks"]), error)
        failed = [{"task_id": t["task_id"], "code": "not_pushed", "message": error} for t in chunk["tasks"]]
        await self.db[CHUNKS].update_one({"_id": chunk["_id"]}, {"$set": {
            "status": "failed", "attempts": attempts, "error": error, "failed": failed}})
        doc = await self.db[BATCHES].find_one_and_update({"_id": chunk["batch"]}, {
            "$inc": {"failed": len(failed), "chunks_done": 1}, "$set": {"updated_at": self.clock()}},
            return_document=ReturnDocument.AFTER)
        TASKS.labels("failed").inc(len(failed))
        await self._maybe_complete(doc)

    # --- P36.2 watch -----------------------------------------------------------------------------------
    async def _watch_loop(self) -> None:
        """Look for due chunks every ``poll_s`` while some are being watched; idle (no query) otherwise."""
        while True:
            if self._watching <= 0:
                self._watching = 0
                self._wake.clear()
                await self._wake.wait()
            try:
                busy = await self.watch_due()
            except Exception:
                log.exception("wireless alarm watch failed; trying again")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.anomaly.poll_s)
                self._wake.clear()

    async def watch_due(self) -> bool:
        """Judge the chunks whose watch time has come, together: one alarm query for all their cells, one
        bulk write of their states, one counter update per batch. True when there were some (look again)."""
        due = await self.db[CHUNKS].find(
            {"status": "watching", "watch_at": {"$lte": self.clock()}}, {"batch": 1},
        ).sort("watch_at", ASCENDING).limit(self.settings.window * 8).to_list(None)
        if not due:
            return False
        chunks = await self._with_tasks(due)
        cells = sorted({t["cell"] for c in chunks for t in c["tasks"]})
        try:
            alarms = await self.nms.alarms(f"{chunks[0]['_id']}+{len(chunks)}", cells)
        except (RetryableError, PermanentError) as exc:
            log.warning("wireless alarm query for %d chunks failed (%s); asked again next pass", len(chunks), exc)
            return False
        now = self.clock()
        judged = [(c, judge(self.settings.anomaly.rules, c["tasks"], alarms)) for c in chunks]
        # a chunk another worker judged first is left alone (the filter on status), and not counted twice
        result = await self.db[CHUNKS].bulk_write([UpdateOne(
            {"_id": c["_id"], "status": "watching"},
            {"$set": {"status": "done", "anomalies": found, "judged_at": now}}) for c, found in judged], ordered=False)
        self._watching -= len(judged)
        if result.modified_count != len(judged):  # another worker got some: count only ours, by reading back
            mine = {d["_id"] async for d in self.db[CHUNKS].find(
                {"_id": {"$in": [c["_id"] for c, _ in judged]}, "judged_at": now}, {"_id": 1})}
            judged = [(c, found) for c, found in judged if c["_id"] in mine]
        per_batch: dict[str, list[int]] = {}
        for c, found in judged:
            counts = per_batch.setdefault(c["batch"], [0, 0])
            counts[0] += len(found)
            counts[1] += 1
            TASKS.labels("anomaly").inc(len(found))
            for a in found:
                log.warning("wireless task %s (order %s, %s) on cell %s: alarm %s, service affecting %s → %s",
                            a["task_id"], a["order_no"], a["order_type"], a["cell"], a["alarm"],
                            a["service_affecting"], a["verdict"])
        for batch_id, (anomalies, done) in per_batch.items():
            doc = await self.db[BATCHES].find_one_and_update({"_id": batch_id}, {
                "$inc": {"anomalies": anomalies, "chunks_done": done}, "$set": {"updated_at": now}},
                return_document=ReturnDocument.AFTER)
            await self._maybe_complete(doc)
        return True

    async def _with_tasks(self, states: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chunks' states with their tasks (one query for all of them)."""
        payloads = {d["_id"]: d["tasks"] async for d in self.db[PAYLOADS].find(
            {"_id": {"$in": [s["_id"] for s in states]}})}
        return [{**s, "tasks": payloads[s["_id"]]} for s in states if s["_id"] in payloads]

    async def _maybe_complete(self, doc: dict[str, Any] | None) -> None:
        if doc and doc.get("closed") and doc["chunks_done"] >= doc["chunks"] and doc["status"] == "running":
            await self.db[BATCHES].update_one({"_id": doc["_id"], "status": "running"}, {"$set": {
                "status": "completed", "finished_at": self.clock()}})
            log.info("wireless batch %s completed: %d tasks, %d ok, %d failed, %d anomalies", doc["_id"],
                     doc["received"], doc["ok"], doc["failed"], doc["anomalies"])

    # --- recovery ---------------------------------------------------------------------------------------
    async def _recover(self) -> None:
        """At start: chunks a previous run stored but did not push, and those it pushed but did not judge."""
        self._watching += await self.db[CHUNKS].count_documents({"status": "watching"})
        if self._watching:
            self._wake.set()
        pending = await self.db[CHUNKS].find({"status": "pending"}).to_list(None)
        for i in range(0, len(pending), 50):
            for chunk in await self._with_tasks(pending[i:i + 50]):
                await self._enqueue(chunk)

    # --- queries --------------------------------------------------------------------------------------
    async def batch(self, batch_id: str, *, details: bool = False) -> dict[str, Any] | None:
        return await batch_doc(self.db, batch_id, details=details)


async def batch_doc(db: Any, batch_id: str, *, details: bool = False) -> dict[str, Any] | None:
    """A batch's document; with ``details`` its failed tasks and anomalies too (first 1,000 each)."""
    doc: dict[str, Any] | None = await db[BATCHES].find_one({"_id": batch_id})
    if doc is None or not details:
        return doc
    failed: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    async for chunk in db[CHUNKS].find({"batch": batch_id, "$or": [
            {"failed.0": {"$exists": True}}, {"anomalies.0": {"$exists": True}}]}, {"failed": 1, "anomalies": 1}):
        failed += chunk.get("failed") or []
        anomalies += chunk.get("anomalies") or []
    return {**doc, "failed_tasks": failed[:1000], "anomaly_list": anomalies[:1000]}


async def batches(db: Any, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest batches first (operators: ``hub tasks wireless list``)."""
    query = {"status": status} if status else {}
    return [d async for d in db[BATCHES].find(query).sort("created_at", DESCENDING).limit(limit)]
