"""SFTP inbound poller: finished files → one envelope per record → ``processed/`` (or ``failed/``).

Per poll: list ``dir``; pick finished files (see :class:`SftpSourceConfig`); for each, in order:

1. **claim** — ``posix_rename`` to ``.claimed~{worker}~{name}``: atomic on the server, so of two
   hub workers exactly one wins; a claim older than ``claim_stale_after_s`` (dead worker) is re-taken;
2. **spool** — download (streamed, parallel reads) to ``HUB_HOME/data/spool`` and hash it;
3. **dedupe** — the SHA-256 already processed by this route (MongoDB ``sftp_files``) ⇒ the file
   goes to ``processed/`` as ``{name}.duplicate-{ts}`` and nothing is emitted;
4. **validate** the whole file (stream, on a thread): any unreadable line or invalid record ⇒
   ``failed/{name}`` + ``failed/{name}.reason.txt`` + an error envelope (dead letter), nothing emitted;
5. **emit** in batches — each record's envelope carries ``sftp:{route}:{sha256}:{line}`` as its
   idempotency key — then record the checksum and only then move the file to ``processed/``.

Kafka or MongoDB down in step 5 ⇒ the claim is renamed back and the file is retried next poll;
records already sent carry the same idempotency keys, so consumers drop the repeats.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import posixpath
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import asyncssh
from pymongo import DESCENDING, IndexModel

from connectors.base import Emit
from connectors.context import ConnectorContext, cancel_task
from connectors.registry import registry
from connectors.sftp.client import SftpSession, SftpUnavailable
from connectors.sftp.config import SftpSourceConfig
from connectors.sftp.records import FileRejected, iter_records
from hub.db import declare_indexes
from hub.envelope import Envelope
from hub.errors import RetryableError, ValidationFailed
from hub.metrics import INTAKE_REQUESTS

log = logging.getLogger(__name__)

FILES = "sftp_files"
declare_indexes(FILES, IndexModel([("route", 1), ("processed_at", DESCENDING)], name="by_route_time"))
CLAIM = ".claimed~"


def claim_name(worker: str, name: str) -> str:
    return f"{CLAIM}{worker}~{name}"


def claimed_original(claimed: str) -> str | None:
    if not claimed.startswith(CLAIM):
        return None
    parts = claimed[len(CLAIM):].split("~", 1)
    return parts[1] if len(parts) == 2 else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@registry.source("sftp", SftpSourceConfig, "SFTP file drop poller: CSV / JSON lines / XML, one envelope per record")
class SftpSource:
    name: ClassVar[str] = "sftp"

    def __init__(self, config: SftpSourceConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self.session = SftpSession(config.connection, context.settings)
        self.dir = self.session.path(config.dir)
        self.worker = context.settings.worker_id
        self._seen: dict[str, tuple[int, int]] = {}
        self._emit: Emit | None = None
        self._task: asyncio.Task[None] | None = None
        self.spool = context.settings.data_dir / "spool" / (context.route or config.partner)
        self.stats: dict[str, int] = {"polls": 0, "processed": 0, "failed": 0, "duplicates": 0, "records": 0,
                                      "retries": 0}

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, emit: Emit) -> None:
        self._emit = emit
        self.spool.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name=f"sftp-poll-{self.ctx.route}")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await self.session.close()
        self._emit = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except RetryableError as exc:
                self.stats["retries"] += 1
                log.warning("route %s: %s; retrying in %.0fs", self.ctx.route, exc, self.config.poll_interval_s)
                await self.session.reset()
            except Exception:
                log.exception("route %s: poll failed", self.ctx.route)
                await self.session.reset()
            await asyncio.sleep(self.config.poll_interval_s)

    # --- one poll --------------------------------------------------------------------------
    async def poll_once(self) -> list[str]:
        """List, pick finished files, process each; returns the names handled (for tests/tools)."""
        sftp = await self.session.client()
        try:
            entries = await sftp.readdir(self.dir)
        except (asyncssh.Error, OSError) as exc:
            if isinstance(exc, asyncssh.SFTPNoSuchFile):
                await sftp.makedirs(self.dir, exist_ok=True)
                return []
            raise SftpUnavailable(f"cannot list {self.dir}: {exc}") from exc
        now = time.time()
        files = {e.filename: e.attrs for e in entries
                 if e.filename not in (".", "..") and e.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR}
        handled: list[str] = []
        for fname, attrs in sorted(files.items()):
            original = claimed_original(fname)
            if original is not None:  # someone's claim: take it over only when it is stale
                if now - (attrs.mtime or now) >= self.config.claim_stale_after_s:
                    mine = claim_name(self.worker, original)
                    if await self._rename(sftp, fname, mine):
                        log.warning("route %s: re-took stale claim %s", self.ctx.route, fname)
                        await self._handle(sftp, mine, original)
                        handled.append(original)
                continue
            if not self._finished(fname, attrs, files, now):
                continue
            mine = claim_name(self.worker, fname)
            if not await self._rename(sftp, fname, mine):
                continue  # another worker claimed it between our listing and our rename
            await sftp.utime(posixpath.join(self.dir, mine), (now, now))
            await self._handle(sftp, mine, fname)
            handled.append(fname)
        self._seen = {n: (a.size or 0, a.mtime or 0) for n, a in files.items()}
        self.stats["polls"] += 1
        return handled

    def _finished(self, fname: str, attrs: Any, files: dict[str, Any], now: float) -> bool:
        cfg = self.config
        if fname.endswith(".part") or fname.startswith(".") or not fnmatch.fnmatch(fname, cfg.pattern):
            return False
        if cfg.done_suffix:
            return fname + cfg.done_suffix in files
        stable = self._seen.get(fname) == (attrs.size or 0, attrs.mtime or 0)
        return stable and now - (attrs.mtime or now) >= cfg.min_age_s

    async def _rename(self, sftp: asyncssh.SFTPClient, old: str, new: str) -> bool:
        try:
            await sftp.posix_rename(posixpath.join(self.dir, old), posixpath.join(self.dir, new))
            return True
        except asyncssh.SFTPNoSuchFile:
            return False

    # --- one file --------------------------------------------------------------------------
    async def _handle(self, sftp: asyncssh.SFTPClient, claimed: str, name: str) -> None:
        remote = posixpath.join(self.dir, claimed)
        local = self.spool / f"{uuid.uuid4().hex}-{name}"
        self.spool.mkdir(parents=True, exist_ok=True)
        heartbeat = asyncio.create_task(self._keep_claim(sftp, remote), name=f"sftp-claim-{name}")
        try:
            await sftp.get(remote, str(local), block_size=256 * 1024, max_requests=32)
            digest = await asyncio.to_thread(sha256_file, local)
            await self._process(sftp, claimed, name, local, digest)
        except RetryableError:
            await self._rename(sftp, claimed, name)  # give it back: retried on the next poll
            raise
        except (asyncssh.Error, OSError) as exc:
            await self._rename(sftp, claimed, name)
            raise SftpUnavailable(f"transfer of {name} failed: {exc}") from exc
        finally:
            await cancel_task(heartbeat)
            local.unlink(missing_ok=True)

    async def _keep_claim(self, sftp: asyncssh.SFTPClient, remote: str) -> None:
        """Touch the claim while a long file is processed, so no other worker thinks it stale."""
        interval = self.config.claim_stale_after_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                now = time.time()
                await sftp.utime(remote, (now, now))
            except (asyncssh.Error, OSError):
                return  # moved or the session died: the file's own handling reports that

    async def _process(self, sftp: asyncssh.SFTPClient, claimed: str, name: str, local: Path, digest: str) -> None:
        db = self.ctx.db
        key = f"{self.ctx.route}:{digest}"
        try:
            done = await db[FILES].find_one({"_id": key}) if db is not None else None
        except Exception as exc:
            raise RetryableError(f"MongoDB unavailable: {exc}") from exc
        if done is not None:
            log.info("route %s: %s is a duplicate of %s (sha256 %s); not processed again",
                     self.ctx.route, name, done.get("name"), digest[:12])
            self.stats["duplicates"] += 1
            INTAKE_REQUESTS.labels(self.config.partner, "sftp", "duplicate").inc()
            await self._move(sftp, claimed, self.config.processed_dir, f"{name}.duplicate-{int(time.time())}")
            await self._remove_done(sftp, name)
            return
        problems = await asyncio.to_thread(self._validate, local, digest, name)
        if problems:
            await self._fail(sftp, claimed, name, digest, problems)
            return
        count = await self._emit_all(local, digest, name)
        if db is not None:
            try:
                await db[FILES].update_one({"_id": key}, {"$set": {
                    "route": self.ctx.route, "name": name, "sha256": digest, "records": count,
                    "status": "processed", "worker": self.worker, "processed_at": datetime.now(UTC)}}, upsert=True)
            except Exception as exc:
                raise RetryableError(f"MongoDB unavailable: {exc}") from exc
        await self._move(sftp, claimed, self.config.processed_dir, name)
        await self._remove_done(sftp, name)
        self.stats["processed"] += 1
        self.stats["records"] += count
        INTAKE_REQUESTS.labels(self.config.partner, "sftp", "accepted").inc()
        log.info("route %s: %s processed, %d records", self.ctx.route, name, count)

    def envelope(self, line: int, record: dict[str, Any], digest: str, name: str) -> Envelope:
        return Envelope(
            type="record.received", source=self.config.partner, protocol="sftp",
            correlation_id=f"file-{digest[:24]}", idempotency_key=f"sftp:{self.ctx.route}:{digest}:{line}",
            payload=record, headers={"file": name, "line": str(line), "file-sha256": digest},
        )

    def sample(self, raw: bytes, limit: int = 20) -> list[Envelope]:
        """Dry run (``hub routes check --sample``): the raw envelopes of a sample file's first records."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sample"
            path.write_bytes(raw)
            digest = hashlib.sha256(raw).hexdigest()
            out = []
            for line, record in iter_records(path, self.config):
                out.append(self.envelope(line, record, digest, "sample"))
                if len(out) >= limit:
                    break
            return out

    def _validate(self, local: Path, digest: str, name: str) -> list[str]:
        """Whole-file check before anything is emitted (runs on a thread)."""
        prepare = getattr(self._emit, "prepare", None)
        if not getattr(self._emit, "can_reject", True):
            prepare = None  # records cannot be rejected: only check that the whole file parses
        problems: list[str] = []
        try:
            for line, record in iter_records(local, self.config):
                if prepare is None:
                    continue
                try:
                    prepare(self.envelope(line, record, digest, name))
                except ValidationFailed as exc:
                    detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in exc.errors) or str(exc)
                    problems.append(f"line {line}: {detail}")
                    if len(problems) >= self.config.max_errors_reported:
                        problems.append("… more errors not listed")
                        break
        except FileRejected as exc:
            problems.append(str(exc))
        return problems

    def _take(self, records: Iterator[tuple[int, dict[str, Any]]], digest: str, name: str) -> list[Envelope]:
        prepare = getattr(self._emit, "prepare", None)
        out = []
        for line, record in records:
            env = self.envelope(line, record, digest, name)
            out.append(prepare(env) if prepare is not None else env)
            if len(out) >= self.config.batch_size:
                break
        return out

    async def _emit_all(self, local: Path, digest: str, name: str) -> int:
        emit = self._emit
        if emit is None:
            raise RetryableError("source stopping")
        batch_publish = getattr(emit, "publish_batch", None)
        records = iter_records(local, self.config)
        count = 0
        pending = asyncio.ensure_future(asyncio.to_thread(self._take, records, digest, name))
        while True:
            batch = await pending
            if not batch:
                break
            pending = asyncio.ensure_future(asyncio.to_thread(self._take, records, digest, name))
            if batch_publish is not None:
                await batch_publish(batch)
            else:
                for env in batch:
                    await emit(env)
            count += len(batch)
        return count

    async def _fail(self, sftp: asyncssh.SFTPClient, claimed: str, name: str, digest: str,
                    problems: list[str]) -> None:
        reason = (f"file: {name}\nsha256: {digest}\nroute: {self.ctx.route}\nrejected_at: "
                  f"{datetime.now(UTC).isoformat()}\nreason:\n" + "\n".join(f"  {p}" for p in problems) + "\n")
        failed_dir = posixpath.join(self.dir, self.config.failed_dir)
        await sftp.makedirs(failed_dir, exist_ok=True)
        target = await self._move(sftp, claimed, self.config.failed_dir, name)
        async with sftp.open(target + ".reason.txt", "w") as fh:
            await fh.write(reason)
        await self._remove_done(sftp, name)
        self.stats["failed"] += 1
        INTAKE_REQUESTS.labels(self.config.partner, "sftp", "rejected_invalid").inc()
        log.error("route %s: %s rejected → %s: %s", self.ctx.route, name, self.config.failed_dir, problems[0])
        reject = getattr(self._emit, "reject", None)
        if reject is not None:
            try:
                await reject(f"file {name} rejected: " + "; ".join(problems[:5]), protocol="sftp", ref=digest,
                             file=name, prefix=self.ctx.settings.topic_prefix)
            except Exception as exc:
                log.warning("route %s: error envelope for %s not published: %s", self.ctx.route, name, exc)

    async def _move(self, sftp: asyncssh.SFTPClient, claimed: str, folder: str, name: str) -> str:
        target_dir = posixpath.join(self.dir, folder)
        await sftp.makedirs(target_dir, exist_ok=True)
        target = posixpath.join(target_dir, name)
        if await sftp.exists(target):
            target = posixpath.join(target_dir, f"{name}.{int(time.time() * 1000)}")
        await sftp.posix_rename(posixpath.join(self.dir, claimed), target)
        return target

    async def _remove_done(self, sftp: asyncssh.SFTPClient, name: str) -> None:
        if self.config.done_suffix:
            try:
                await sftp.remove(posixpath.join(self.dir, name + self.config.done_suffix))
            except asyncssh.SFTPNoSuchFile:
                pass
