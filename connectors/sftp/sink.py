"""SFTP outbound writer: render the path, check the size, upload ``name.part``, ``posix_rename``.

Paths come from a template (seeds/003 §12.2:
``/GW/{province}/changeProdStaDerateForm/{yyyy}/{mm}/{yyyymmdd}{seq:04d}.{ext}``); every value put
into it is sanitised, and the result must stay under the template's fixed prefix. ``seq`` is a
per-directory-and-day counter in MongoDB (``sftp_seq``), so two workers never pick the same name.
A delivery is recorded by idempotency key (``sftp_uploads``): a redelivered envelope answers with
the first upload's path instead of writing a second file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import posixpath
import re
import string
import time
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import asyncssh
from pymongo import ReturnDocument

from connectors.base import Outcome
from connectors.context import ConnectorContext
from connectors.registry import registry
from connectors.sftp.client import SftpSession
from connectors.sftp.config import SftpSinkConfig
from connectors.sftp.filecrypto import FileSealer
from hub.envelope import Envelope
from hub.errors import RetryableError

SAFE_VALUE = re.compile(r"\A[\w\-.@+\u4e00-\u9fff]{1,128}\Z")  # \Z: '$' also matched before a final newline
UPLOADS, SEQ = "sftp_uploads", "sftp_seq"


class UnsafePath(ValueError):
    pass


def sanitise(name: str, value: Any) -> str:
    text = str(value)
    if not SAFE_VALUE.match(text) or ".." in text:
        raise UnsafePath(f"{name}={text!r} cannot be used in a file path")
    return text


def fixed_prefix(template: str) -> str:
    """The template's directory part before the first placeholder (``/GW/``)."""
    head = template.split("{", 1)[0]
    return head.rsplit("/", 1)[0] + "/" if "/" in head else ""


def render_path(template: str, values: dict[str, Any]) -> str:
    """Fill the template with sanitised values; refuse anything that escapes the prefix."""
    fields = list(dict.fromkeys(n for _, n, _, _ in string.Formatter().parse(template) if n))  # template order
    safe: dict[str, Any] = {}
    for name in fields:
        if name not in values:
            raise UnsafePath(f"path template needs {name!r}, the envelope has no such field")
        value = values[name]
        safe[name] = value if isinstance(value, int) and not isinstance(value, bool) else sanitise(name, value)
    path = template.format_map(safe)
    norm = posixpath.normpath(path)
    if norm != path.rstrip("/") or ".." in norm.split("/") or not norm.startswith(fixed_prefix(template) or ""):
        raise UnsafePath(f"rendered path {path!r} is not allowed")
    return norm


@registry.sink("sftp", SftpSinkConfig, "Upload a file to a partner's SFTP (name.part + posix_rename, size limit)")
class SftpSink:
    name: ClassVar[str] = "sftp"

    def __init__(self, config: SftpSinkConfig, context: ConnectorContext) -> None:
        self.config = config
        self.ctx = context
        self.session = SftpSession(config.connection, context.settings)
        self._local_seq: dict[str, int] = {}
        self.sealer = (FileSealer(config.encryption, config.crypto, f"partner {config.partner}: sftp sink")
                       if config.encryption is not None else None)

    async def start(self) -> None:
        if self.sealer is not None:  # a missing or bad public key fails the start, not the first file
            await asyncio.to_thread(self.sealer.warm)
        # connects lazily on the first delivery (and reconnects after a failure)

    async def stop(self) -> None:
        await self.session.close()

    def content(self, envelope: Envelope) -> bytes:
        cfg = self.config
        if cfg.content == "base64_field":
            raw = envelope.payload.get(cfg.content_field)
            if not isinstance(raw, str):
                raise ValueError(f"payload.{cfg.content_field} (base64) is missing")
            return base64.b64decode(raw, validate=True)
        if cfg.content == "jsonl_payload":
            return json.dumps(envelope.payload, ensure_ascii=False).encode() + b"\n"
        return json.dumps(envelope.payload, ensure_ascii=False, indent=1).encode()

    async def _seq(self, directory_key: str) -> int:
        db = self.ctx.db
        if db is None:
            self._local_seq[directory_key] = self._local_seq.get(directory_key, 0) + 1
            return self._local_seq[directory_key]
        doc = await db[SEQ].find_one_and_update(
            {"_id": directory_key}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["seq"])

    async def deliver(self, envelope: Envelope) -> Outcome:
        started = time.perf_counter()
        cfg = self.config
        db = self.ctx.db

        def done(ok: bool, **kw: Any) -> Outcome:
            return Outcome(ok=ok, duration_ms=(time.perf_counter() - started) * 1000, **kw)

        try:
            if db is not None:
                first = await db[UPLOADS].find_one({"_id": envelope.idempotency_key})
                if first is not None:
                    return done(True, status="duplicate", response={"path": first["path"]}, details={"duplicate": True})
            try:
                body = self.content(envelope)
            except (ValueError, TypeError) as exc:
                return done(False, status="invalid", error=str(exc))
            if len(body) > cfg.max_bytes:
                return done(False, status="too_large", error=f"file is {len(body)} bytes, limit {cfg.max_bytes}")
            now = datetime.now(ZoneInfo(cfg.timezone))
            values: dict[str, Any] = {k: v for k, v in envelope.payload.items() if isinstance(v, str | int)}
            values.update(yyyy=f"{now:%Y}", mm=f"{now:%m}", dd=f"{now:%d}", yyyymmdd=f"{now:%Y%m%d}",
                          hhmmss=f"{now:%H%M%S}", order_id=envelope.correlation_id, envelope_id=envelope.id)
            values.setdefault("ext", cfg.default_ext)
            try:
                probe = render_path(cfg.path_template, {**values, "seq": 0})
                values["seq"] = await self._seq(f"{cfg.partner}:{posixpath.dirname(probe)}:{values['yyyymmdd']}")
                path = render_path(cfg.path_template, values)
            except UnsafePath as exc:
                return done(False, status="invalid_path", error=str(exc))
            pieces = [body[i:i + 256 * 1024] for i in range(0, len(body), 256 * 1024)]
            if self.sealer is not None:  # D.2.2: the whole file, a fresh data key each (AES on a thread)
                sealer = self.sealer
                pieces = await asyncio.to_thread(lambda: list(sealer.seal(body)))
            remote = self.session.path(path)
            sftp = await self.session.client()
            await sftp.makedirs(posixpath.dirname(remote), exist_ok=True)
            part = remote + ".part"
            async with sftp.open(part, "wb") as fh:
                for piece in pieces:
                    await fh.write(piece)
            await sftp.posix_rename(part, remote)
            written = sum(len(p) for p in pieces)
            if db is not None:
                await db[UPLOADS].update_one({"_id": envelope.idempotency_key}, {"$set": {
                    "path": path, "bytes": written, "partner": cfg.partner, "at": datetime.now(UTC)}}, upsert=True)
            response = {"path": path, "bytes": written}
            if self.sealer is not None:
                response.update(encrypted=True, plaintext_bytes=len(body))
            return done(True, status="uploaded", response=response)
        except (asyncssh.Error, OSError, RetryableError) as exc:
            await self.session.reset()
            return done(False, retryable=True, status="unavailable", error=f"SFTP upload failed: {exc}")
