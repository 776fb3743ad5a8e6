"""SFTP inbound poller: finished files → one envelope per record → ``processed/`` (or ``failed/``).

Per poll: list ``dir``; ask the route's completion rule which files are finished
(:mod:`connectors.sftp.completion`); for each, in order:

1. **claim** — ``posix_rename`` to ``.claimed~{worker}~{name}``: atomic on the server, so of two
   hub workers exactly one wins; a claim older than ``claim_stale_after_s`` (dead worker) is re-taken,
   and at start a worker takes back the claims its own previous run left (stopped or killed);
2. **check** — the claim must have the size the listing showed; **spool** — download (streamed,
   parallel reads) to ``HUB_HOME/data/spool``; **check again** — bytes read must equal the size
   on disk and the mtime must be unchanged, else a writer is still at it: the file is put back
   under its name and waits for its completion rule again;
3. **dedupe** — the SHA-256 already processed by this route (MongoDB ``sftp_files``) ⇒ the file
   goes to ``processed/`` as ``{name}.duplicate-{ts}`` and nothing is emitted;
4. **validate** the whole file (stream, on a thread): any unreadable line or invalid record ⇒
   ``failed/{name}`` + ``failed/{name}.reason.txt`` + an error envelope (dead letter), nothing emitted;
5. **emit** in batches — each record's idempotency key is ``sftp:{route}:{digest}:{line}``, the
   digest covering the route, the name and the file up to that record, so a file read again after
   it grew repeats the keys of what was already sent — then check the file once more (changed ⇒
   put back, read again, repeats dropped by key), record the checksum and only then move the file
   to ``processed/``.

A 0-byte file is never recorded as processed content (``empty_files``: left alone, or moved to
``failed/`` with a reason). Kafka or MongoDB down in step 5 ⇒ the claim is renamed back and the
file is retried next poll. Stopping (task cancellation) interrupts a file between batches: reader
threads see a stop flag within a few hundred records, the spool file is closed and removed, and the
claim is renamed back so the next start reads the file again (same keys, so no new duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import posixpath
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

import asyncssh
from pymongo import DESCENDING, IndexModel

from connectors.base import Emit
from connectors.context import ConnectorContext, cancel_task
from connectors.registry import registry
from connectors.sftp.client import SftpSession, SftpUnavailable
from connectors.sftp.completion import CompletionWatch, Verdict, state
from connectors.sftp.config import SftpSourceConfig
from connectors.sftp.filecrypto import FileDecryption
from connectors.sftp.records import FileRejected, ReadStopped, Record, read_records
from connectors.supervision import Supervised
from hub.db import declare_indexes
from hub.envelope import Envelope
from hub.errors import RetryableError, ValidationFailed
from hub.metrics import INTAKE_REQUESTS

log = logging.getLogger(__name__)

FILES = "sftp_files"
declare_indexes(FILES, IndexModel([("route", 1), ("processed_at", DESCENDING)], name="by_route_time"))
CLAIM = ".claimed~"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNTERMINATED_PATIENCE = 4  # quiet windows a file cut mid-line waits before it is taken as it is
T = TypeVar("T")


def claim_name(worker: str, name: str) -> str:
    return f"{CLAIM}{worker}~{name}"


def _claim_parts(claimed: str) -> tuple[str, str] | None:
    if not claimed.startswith(CLAIM):
        return None
    parts = claimed[len(CLAIM):].split("~", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def claimed_original(claimed: str) -> str | None:
    parts = _claim_parts(claimed)
    return parts[1] if parts else None


def claimed_by(claimed: str) -> str | None:
    parts = _claim_parts(claimed)
    return parts[0] if parts else None


def sha256_file(path: Path, stop: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            if stop is not None and stop.is_set():
                raise ReadStopped("source stopping")
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Claim:
    """What the claimed file looked like when we took it; the heartbeat moves ``mtime`` (its touch)."""

    remote: str
    size: int
    mtime: int


class FileChanged(Exception):
    """The claimed file is not what it was when claimed: a writer is still at it."""


@registry.source("sftp", SftpSourceConfig, "SFTP file drop poller: CSV / JSON lines / XML, one envelope per record")
class SftpSource:
    name: ClassVar[str] = "sftp"

    def __init__(self, config: SftpSourceConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self.session = SftpSession(config.connection, context.settings)
        self.dir = self.session.path(config.dir)
        self.worker = context.settings.worker_id
        self.watch = CompletionWatch(config)
        self._empty_noted: set[str] = set()
        self._unterminated: set[str] = set()
        self._took_back = False
        self._moved: dict[str, tuple[str, int, int, float]] = {}  # processed path → name, size, mtime, until
        self._emit: Emit | None = None
        self._task: Supervised | None = None
        self.current: str | None = None  # the file being handled, and how far (for tools and tests)
        self.phase = "idle"
        self.spool = context.settings.data_dir / "spool" / (context.route or config.partner)
        self.decryption = (FileDecryption(config.encryption, config.crypto, f"route {context.route}")
                           if config.encryption is not None else None)
        self.stats: dict[str, int] = {"polls": 0, "processed": 0, "failed": 0, "duplicates": 0, "records": 0,
                                      "retries": 0, "changed": 0, "empty": 0, "released": 0,
                                      "held_unterminated": 0}  # polls that left a quiet file ending mid-line

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, emit: Emit) -> None:
        if self.decryption is not None:  # our private keys' checks take ~50 ms CPU: a thread; bad = not started
            await asyncio.to_thread(self.decryption.warm)
        self._emit = emit
        self.spool.mkdir(parents=True, exist_ok=True)
        self._task = self.ctx.supervise("sftp-poll", self._run)

    async def stop(self) -> None:
        """Cancel the poller: a file in progress is given back (claim renamed back), not finished."""
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
        # a str directory lists str names (asyncssh types them bytes | str); fsdecode is a no-op on str
        files = {os.fsdecode(e.filename): e.attrs for e in entries
                 if e.filename not in (".", "..") and e.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR}
        self.watch.observe(files)
        if not self._took_back:
            await self._take_back_own_claims(sftp, files)
            self._took_back = True
        self._empty_noted &= files.keys()
        self._unterminated &= files.keys()
        await self._recheck_processed(sftp)
        handled: list[str] = []
        for fname, attrs in sorted(files.items()):
            original = claimed_original(fname)
            if original is not None:  # someone's claim: take it over only when it is stale
                if claimed_by(fname) != self.worker and now - (attrs.mtime or now) >= self.config.claim_stale_after_s:
                    mine = claim_name(self.worker, original)
                    if await self._rename(sftp, fname, mine):
                        log.warning("route %s: re-took stale claim %s", self.ctx.route, fname)
                        await self._handle(sftp, mine, original, None)
                        handled.append(original)
                continue
            verdict = self.watch.verdict(fname, files)
            if verdict is Verdict.EMPTY:
                await self._empty(sftp, fname)
                continue
            limit = self.config.max_file_bytes
            if verdict is Verdict.READY and limit is not None and state(attrs)[0] > limit:
                await self._too_large(sftp, fname, state(attrs)[0], limit)
                continue
            if verdict is not Verdict.READY or await self._cut_mid_line(sftp, fname, attrs):
                continue
            mine = claim_name(self.worker, fname)
            if not await self._rename(sftp, fname, mine):
                continue  # another worker claimed it between our listing and our rename
            await self._handle(sftp, mine, fname, attrs)
            handled.append(fname)
        self.stats["polls"] += 1
        return handled

    async def _cut_mid_line(self, sftp: asyncssh.SFTPClient, name: str, attrs: Any) -> bool:
        """Quiescence and a line format: a file whose last byte is not a newline is most likely an
        upload stalled in the middle of a record — taking it would send that record cut short. Wait
        ``UNTERMINATED_PATIENCE`` quiet windows before believing the partner omits the final newline."""
        rule = self.config.completion
        if rule.rule != "quiescence" or self.config.format == "xml" or self.decryption is not None:
            return False  # an encrypted file ends with a tag, not a newline: a cut one fails authentication
        if self.watch.quiet_for(name) >= UNTERMINATED_PATIENCE * rule.quiet_s:
            return False
        try:
            async with sftp.open(posixpath.join(self.dir, name), "rb") as fh:
                await fh.seek(max(state(attrs)[0] - 1, 0))
                last = await fh.read(1)
        except asyncssh.SFTPNoSuchFile:
            return True  # gone (another worker took it)
        except (asyncssh.Error, OSError) as exc:
            raise SftpUnavailable(f"cannot read the end of {name}: {exc}") from exc
        if last in (b"\n", b""):
            return False
        if name not in self._unterminated:
            self._unterminated.add(name)
            log.info("route %s: %s does not end with a newline (an upload stalled mid-record?); waiting "
                     "%.0fs more before taking it as it is", self.ctx.route, name,
                     UNTERMINATED_PATIENCE * rule.quiet_s - self.watch.quiet_for(name))
        self.stats["held_unterminated"] += 1
        return True

    async def _take_back_own_claims(self, sftp: asyncssh.SFTPClient, files: dict[str, Any]) -> None:
        """Claims under our own worker id are left by our previous run (stopped mid-file or killed):
        give them back under their names at once, rather than waiting ``claim_stale_after_s``. Each
        then goes through the completion rule again (it is re-checked, not trusted)."""
        for fname in sorted(files):
            original = claimed_original(fname)
            if original is None or claimed_by(fname) != self.worker:
                continue
            if await self._put_back(sftp, fname, original):
                self.stats["released"] += 1
                log.warning("route %s: %s was claimed by a previous run of %s and not finished; "
                            "taken back, it will be read again", self.ctx.route, original, self.worker)

    async def _rename(self, sftp: asyncssh.SFTPClient, old: str, new: str) -> bool:
        try:
            await sftp.posix_rename(posixpath.join(self.dir, old), posixpath.join(self.dir, new))
            return True
        except asyncssh.SFTPNoSuchFile:
            return False

    async def _put_back(self, sftp: asyncssh.SFTPClient, claimed: str, name: str) -> bool:
        """Rename a claim back to its name — never over a newer upload of the same name (plain
        ``rename`` refuses an existing target); then the claim stays and is taken back at start."""
        self.watch.forget(name)
        try:
            await sftp.rename(posixpath.join(self.dir, claimed), posixpath.join(self.dir, name))
            return True
        except asyncssh.SFTPNoSuchFile:
            return False
        except (asyncssh.Error, OSError) as exc:
            log.error("route %s: could not give %s back under its name (%s); left as %s", self.ctx.route,
                      name, exc, claimed)
            return False

    def _watch_processed(self, target: str, name: str, claim: _Claim) -> None:
        window = self.config.completion.late_write_watch_s
        if window > 0:
            self._moved[target] = (name, claim.size, claim.mtime, time.monotonic() + window)

    async def _recheck_processed(self, sftp: asyncssh.SFTPClient) -> None:
        """A writer stalled longer than the completion rule allowed and resumed after the file was
        processed writes into ``processed/`` (the same inode): for ``late_write_watch_s`` after the
        move, a file there that changed is put back under its name and read again (the records
        already sent repeat their keys)."""
        now = time.monotonic()
        for target, (name, size, mtime, until) in list(self._moved.items()):
            if now > until:
                del self._moved[target]
                continue
            try:
                current = state(await sftp.stat(target))
            except asyncssh.SFTPNoSuchFile:
                del self._moved[target]
                continue
            if current == (size, mtime):
                continue
            try:
                await sftp.rename(target, posixpath.join(self.dir, name))
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    await sftp.remove(target + ".reason.txt")  # from an attempt that saw it cut short
            except (asyncssh.Error, OSError) as exc:
                log.error("route %s: %s was written to after it was processed (%d → %d bytes) and could not "
                          "be put back (%s); it stays in %s", self.ctx.route, name, size, current[0], exc, target)
                continue
            finally:
                self._moved.pop(target, None)
            self.stats["changed"] += 1
            INTAKE_REQUESTS.labels(self.config.partner, "sftp", "changed").inc()
            log.warning("route %s: %s was written to after it was processed (%d → %d bytes): the upload had "
                        "stalled longer than the completion rule allows; put back, it is read again",
                        self.ctx.route, name, size, current[0])

    async def _too_large(self, sftp: asyncssh.SFTPClient, name: str, size: int, limit: int) -> None:
        """A finished file over ``max_file_bytes``: claimed and moved to ``failed/`` unread, with
        its size and the limit as the reason (and an error envelope, a log line, a metric)."""
        mine = claim_name(self.worker, name)
        if not await self._rename(sftp, name, mine):
            return
        ref = hashlib.sha256(f"{name}\0{size}\0{time.time_ns()}".encode()).hexdigest()
        await self._fail(sftp, mine, name, f"not read ({ref[:16]})",
                         [f"file too large: {size} bytes, limit {limit} bytes (max_file_bytes); not read"],
                         outcome="rejected_too_large", ref=ref)

    async def _empty(self, sftp: asyncssh.SFTPClient, name: str) -> None:
        """A finished 0-byte file: never processed content (its checksum would make the next empty
        file a "duplicate", and a stalled upload that resumes would write into processed/)."""
        if self.config.empty_files == "leave":
            if name not in self._empty_noted:
                self._empty_noted.add(name)
                self.stats["empty"] += 1
                INTAKE_REQUESTS.labels(self.config.partner, "sftp", "empty").inc()
                log.warning("route %s: %s is empty (0 bytes); left in place until it has content",
                            self.ctx.route, name)
            return
        mine = claim_name(self.worker, name)
        if await self._rename(sftp, name, mine):
            self.stats["empty"] += 1
            await self._fail(sftp, mine, name, EMPTY_SHA256,
                             ["empty file (0 bytes): nothing to ingest, not recorded as processed; "
                              "upload it again if that was not intended"], outcome="empty")

    # --- one file --------------------------------------------------------------------------
    async def _handle(self, sftp: asyncssh.SFTPClient, claimed: str, name: str, listed: Any) -> None:
        """Check, spool, check again, then process one claimed file; give the claim back on any
        failure or on cancellation (the stop flag makes reader threads give up promptly)."""
        remote = posixpath.join(self.dir, claimed)
        local = self.spool / f"{uuid.uuid4().hex}-{name}"
        self.spool.mkdir(parents=True, exist_ok=True)
        stop = threading.Event()
        heartbeat: asyncio.Task[None] | None = None
        self.current, self.phase = name, "claimed"
        try:
            claim = await self._touch_claim(sftp, remote)
            if listed is not None and claim.size != state(listed)[0]:
                raise FileChanged(f"size {state(listed)[0]} when listed, {claim.size} when claimed")
            heartbeat = asyncio.create_task(self._keep_claim(sftp, claim), name=f"sftp-claim-{name}")
            self.phase = "spooling"
            await sftp.get(remote, str(local), block_size=256 * 1024, max_requests=32)
            await self._check_unchanged(sftp, claim, local.stat().st_size)
            if claim.size == 0:
                raise FileChanged("empty when read")
            if self.decryption is not None:  # authenticated as a whole before anything else happens
                digest, refused = await self._in_thread(stop, self.decryption.authenticate, local, stop)
                if refused is not None:
                    await self._fail(sftp, claimed, name, digest, [refused])
                    return
            else:
                digest = await self._in_thread(stop, sha256_file, local, stop)
            await self._process(sftp, claimed, name, local, digest, claim, stop)
        except FileChanged as exc:
            self.stats["changed"] += 1
            INTAKE_REQUESTS.labels(self.config.partner, "sftp", "changed").inc()
            log.warning("route %s: %s changed while being taken (%s): still being written; put back, it "
                        "is read again once finished", self.ctx.route, name, exc)
            await self._put_back(sftp, claimed, name)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._put_back(sftp, claimed, name), 2)
            log.info("route %s: stopped while reading %s; claim given back", self.ctx.route, name)
            raise
        except RetryableError:
            await self._put_back(sftp, claimed, name)  # give it back: retried on the next poll
            raise
        except (asyncssh.Error, OSError) as exc:
            await self._put_back(sftp, claimed, name)
            raise SftpUnavailable(f"transfer of {name} failed: {exc}") from exc
        finally:
            stop.set()
            self.current, self.phase = None, "idle"
            await cancel_task(heartbeat)
            local.unlink(missing_ok=True)

    async def _touch_claim(self, sftp: asyncssh.SFTPClient, remote: str) -> _Claim:
        now = time.time()
        await sftp.utime(remote, (now, now))  # the claim's age is its mtime (claim_stale_after_s)
        size, mtime = state(await sftp.stat(remote))
        return _Claim(remote, size, mtime)

    async def _check_unchanged(self, sftp: asyncssh.SFTPClient, claim: _Claim, read: int | None = None) -> None:
        """The file must still be what we claimed (and read): same size, mtime as we last set it."""
        size, mtime = state(await sftp.stat(claim.remote))
        if read is not None and read != size:
            raise FileChanged(f"{read} bytes read, {size} on disk")
        if (size, mtime) != (claim.size, claim.mtime):
            raise FileChanged(f"size {claim.size} → {size}, mtime {claim.mtime} → {mtime}")

    async def _keep_claim(self, sftp: asyncssh.SFTPClient, claim: _Claim) -> None:
        """Touch the claim while a long file is processed, so no other worker thinks it stale."""
        interval = self.config.claim_stale_after_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                now = time.time()
                await sftp.utime(claim.remote, (now, now))
                claim.mtime = state(await sftp.stat(claim.remote))[1]  # a size change is still caught
            except (asyncssh.Error, OSError):
                return  # moved or the session died: the file's own handling reports that

    async def _in_thread(self, stop: threading.Event, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking file work on a thread; on cancellation raise the stop flag and wait (briefly)
        for the thread to notice, so no reader outlives the stop holding the spool file open."""
        fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(fut, 5)
            raise

    async def _process(self, sftp: asyncssh.SFTPClient, claimed: str, name: str, local: Path, digest: str,
                       claim: _Claim, stop: threading.Event) -> None:
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
            target = await self._move(sftp, claimed, self.config.processed_dir, f"{name}.duplicate-{int(time.time())}")
            self._watch_processed(target, name, claim)
            await self._remove_done(sftp, name)
            return
        self.phase = "validating"
        problems = await self._in_thread(stop, self._validate, local, digest, name, stop)
        if problems:
            await self._fail(sftp, claimed, name, digest, problems)
            return
        self.phase = "emitting"
        count = await self._emit_all(local, digest, name, stop)
        await self._check_unchanged(sftp, claim)  # written to while we sent it: read it again
        if db is not None:
            try:
                await db[FILES].update_one({"_id": key}, {"$set": {
                    "route": self.ctx.route, "name": name, "sha256": digest, "records": count,
                    "bytes": claim.size, "status": "processed", "worker": self.worker,
                    "processed_at": datetime.now(UTC)}}, upsert=True)
            except Exception as exc:
                raise RetryableError(f"MongoDB unavailable: {exc}") from exc
        target = await self._move(sftp, claimed, self.config.processed_dir, name)
        self._watch_processed(target, name, claim)
        await self._remove_done(sftp, name)
        self.stats["processed"] += 1
        self.stats["records"] += count
        INTAKE_REQUESTS.labels(self.config.partner, "sftp", "accepted").inc()
        log.info("route %s: %s processed, %d records", self.ctx.route, name, count)

    def _opener(self, local: Path) -> Callable[[], IO[bytes]] | None:
        """What the record readers parse: the file, or its authenticated plaintext (encrypted route)."""
        decryption = self.decryption
        return None if decryption is None else (lambda: decryption.open(local))

    def _seed(self, name: str) -> bytes:
        """What every record digest of a file starts from: same route and name, same leading bytes
        ⇒ same keys (a file read again after it grew); anything else ⇒ different keys."""
        return f"{self.ctx.route}\0{name}\0".encode()

    def envelope(self, rec: Record, digest: str, name: str) -> Envelope:
        return Envelope(
            type="record.received", source=self.config.partner, protocol="sftp",
            correlation_id=f"file-{digest[:24]}", idempotency_key=f"sftp:{self.ctx.route}:{rec.digest}:{rec.line}",
            payload=rec.data, headers={"file": name, "line": str(rec.line), "file-sha256": digest},
        )

    def sample(self, raw: bytes, limit: int = 20) -> list[Envelope]:
        """Dry run (``hub routes check --sample``): the raw envelopes of a sample file's first records."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sample"
            path.write_bytes(raw)
            digest = hashlib.sha256(raw).hexdigest()
            out = []
            for rec in read_records(path, self.config, self._seed("sample"), opener=self._opener(path)):
                out.append(self.envelope(rec, digest, "sample"))
                if len(out) >= limit:
                    break
            return out

    def _validate(self, local: Path, digest: str, name: str, stop: threading.Event | None = None) -> list[str]:
        """Whole-file check before anything is emitted (runs on a thread)."""
        emit = self._emit
        # records that cannot be rejected (no transform, no canonical model): only check the file parses
        prepare = emit.prepare if emit is not None and emit.can_reject else None
        problems: list[str] = []
        try:
            for rec in read_records(local, self.config, self._seed(name), stop, self._opener(local)):
                if prepare is None:
                    continue
                try:
                    prepare(self.envelope(rec, digest, name))
                except ValidationFailed as exc:
                    detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in exc.errors) or str(exc)
                    problems.append(f"line {rec.line}: {detail}")
                    if len(problems) >= self.config.max_errors_reported:
                        problems.append("… more errors not listed")
                        break
        except FileRejected as exc:
            problems.append(str(exc))
        return problems

    def _take(self, records: Iterator[Record], digest: str, name: str) -> list[Envelope]:
        emit = self._emit
        if emit is None:
            raise RetryableError("source stopping")
        out = []
        for rec in records:
            out.append(emit.prepare(self.envelope(rec, digest, name)))
            if len(out) >= self.config.batch_size:
                break
        return out

    async def _emit_all(self, local: Path, digest: str, name: str, stop: threading.Event) -> int:
        """Emit batch by batch, the next batch read on a thread while this one is sent. Stopping
        (cancellation) lands between batches; the reader thread is waited for and the file closed."""
        emit = self._emit
        if emit is None:
            raise RetryableError("source stopping")
        records = read_records(local, self.config, self._seed(name), stop, self._opener(local))
        count = 0
        pending = asyncio.ensure_future(asyncio.to_thread(self._take, records, digest, name))
        try:
            while True:
                batch = await asyncio.shield(pending)
                if not batch:
                    break
                pending = asyncio.ensure_future(asyncio.to_thread(self._take, records, digest, name))
                await emit.publish_batch(batch)
                count += len(batch)
        finally:
            if not pending.done():
                stop.set()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(pending), 5)
            with contextlib.suppress(ValueError):
                records.close()  # closes the spool file now, not at garbage collection
        return count

    async def _fail(self, sftp: asyncssh.SFTPClient, claimed: str, name: str, digest: str,
                    problems: list[str], outcome: str = "rejected_invalid", ref: str | None = None) -> None:
        reason = (f"file: {name}\nsha256: {digest}\nroute: {self.ctx.route}\nrejected_at: "
                  f"{datetime.now(UTC).isoformat()}\nreason:\n" + "\n".join(f"  {p}" for p in problems) + "\n")
        failed_dir = posixpath.join(self.dir, self.config.failed_dir)
        await sftp.makedirs(failed_dir, exist_ok=True)
        target = await self._move(sftp, claimed, self.config.failed_dir, name)
        # written under a temporary name, then renamed: whoever watches failed/ (an operator's script, a
        # test) never reads a reason file that exists but is still empty
        part = target + ".reason.txt.part"
        async with sftp.open(part, "w") as fh:
            await fh.write(reason)
        try:
            await sftp.posix_rename(part, target + ".reason.txt")
        except asyncssh.SFTPOpUnsupported:  # a server without the OpenSSH extension: replace by hand
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(target + ".reason.txt")
            await sftp.rename(part, target + ".reason.txt")
        if outcome != "empty":  # an upload cut short fails too: a resumed writer puts it back
            self._watch_processed(target, name, await self._touch_claim(sftp, target))
        await self._remove_done(sftp, name)
        self.stats["failed"] += 1
        INTAKE_REQUESTS.labels(self.config.partner, "sftp", outcome).inc()
        log.error("route %s: %s rejected → %s: %s", self.ctx.route, name, self.config.failed_dir, problems[0])
        if self._emit is not None:
            try:
                await self._emit.reject(f"file {name} rejected: " + "; ".join(problems[:5]), protocol="sftp",
                                        ref=ref or digest, file=name, prefix=self.ctx.settings.topic_prefix)
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
        if self.config.completion.rule == "done_file":
            try:
                await sftp.remove(posixpath.join(self.dir, name + self.config.completion.done_suffix))
            except asyncssh.SFTPNoSuchFile:
                pass
