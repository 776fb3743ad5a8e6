"""The attachment upload rule of seed 003 (D.2.5, D.2.6; issue 16 item 7).

D.2.5: forms go by SFTP to ``/GW/{省网企业标识}/changeProdStaDerateForm/{YYYY}/{MM}/{yyyymmdd####}.{pdf|jpg|jpeg}``
(the province creates the year and month folders; the name is the date and a **4-digit** sequence —
the seed's example shows 3 digits, the text says 4, we follow the text), **PDF or JPEG only, ≤ 10 MB**.
D.2.6: photos are **JPEG, ≤ 300 KB**. The type is decided by the content (magic bytes: ``%PDF-``,
``FF D8 FF``), never by the name, and the name's extension must agree with it; the folder's year and
month must be the name's. A refusal says which rule (``ValidationFailed`` with ``field`` / ``message``).

"The business step may be submitted only after the upload interface returned the file path": a
blueprint's manual stage declares the path as a required field with :data:`PATH_REGEX` (field rules
of ``user`` nodes, flows/graph/rules.py), and the path comes from :func:`upload` (``POST
/api/v1/attachments/{province}``, app/reports/attachments_http.py), which only answers it once
the file is on the server under its final name (``.part`` + ``posix_rename``, like the SFTP sink).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from datetime import UTC, date, datetime
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReturnDocument

from connectors.sftp.client import SftpSession
from connectors.sftp.config import SftpConnection
from hub.errors import ValidationFailed
from hub.settings import Settings

FOLDER = "changeProdStaDerateForm"
MAX_BYTES = 10 * 1024 * 1024
MAX_PHOTO_BYTES = 300 * 1024
NAME = re.compile(r"\A(?P<day>\d{8})(?P<seq>\d{4})\.(?P<ext>pdf|jpg|jpeg)\Z")
PROVINCE = re.compile(r"\A[A-Z0-9]{2,8}\Z")
#: for a blueprint's field rule: the path an upload returned (D.2.5)
PATH_REGEX = r"^/GW/[A-Z0-9]{2,8}/changeProdStaDerateForm/\d{4}/\d{2}/\d{8}\d{4}\.(pdf|jpg|jpeg)$"
Kind = Literal["form", "photo"]
ATTACHMENTS, SEQ = "attachments", "attachment_seq"


class AttachmentRefused(ValidationFailed):
    """The file breaks the upload rule; ``status`` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, message: str, field: str, status: int = 400) -> None:
        super().__init__(message, [{"field": field, "message": message}])
        self.status = status


def sniff(data: bytes) -> str | None:
    """The type by content: ``pdf``, ``jpeg`` or None (anything else)."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return None


def check(name: str, data: bytes, kind: Kind = "form") -> str:
    """The content type of an acceptable attachment, or :class:`AttachmentRefused` naming the rule."""
    m = NAME.match(name)
    if m is None:
        raise AttachmentRefused(f"file name {name!r} is not yyyymmdd + 4 digits + .pdf/.jpg/.jpeg", "name")
    try:
        date(int(m["day"][:4]), int(m["day"][4:6]), int(m["day"][6:]))
    except ValueError:
        raise AttachmentRefused(f"file name {name!r}: {m['day']} is not a date", "name") from None
    if not data:
        raise AttachmentRefused("the file is empty", "content")
    found = sniff(data)
    if found is None:
        raise AttachmentRefused("the content is neither a PDF nor a JPEG (checked by its bytes, not its name)",
                                "content", 415)
    if (found == "pdf") != (m["ext"] == "pdf"):
        raise AttachmentRefused(f"the content is a {found.upper()}, the name says .{m['ext']}", "content", 415)
    if kind == "photo" and found != "jpeg":
        raise AttachmentRefused("a photo must be a JPEG (D.2.6)", "content", 415)
    limit = MAX_PHOTO_BYTES if kind == "photo" else MAX_BYTES
    if len(data) > limit:
        raise AttachmentRefused(f"{len(data)} bytes is over the {'photo ' if kind == 'photo' else ''}limit of "
                                f"{limit} bytes", "content", 413)
    return found


def remote_path(province: str, name: str) -> str:
    if not PROVINCE.match(province):
        raise AttachmentRefused(f"province {province!r} is not an enterprise code like BJ00", "province")
    m = NAME.match(name)
    if m is None:
        raise AttachmentRefused(f"file name {name!r} is not yyyymmdd + 4 digits + .pdf/.jpg/.jpeg", "name")
    return f"/GW/{province}/{FOLDER}/{m['day'][:4]}/{m['day'][4:6]}/{name}"


async def next_name(db: AsyncIOMotorDatabase[Any], province: str, day: date, ext: str) -> str:
    """``yyyymmdd####.ext``: the next sequence of the province's day (a counter in MongoDB: two
    workers never pick the same name)."""
    doc = await db[SEQ].find_one_and_update({"_id": f"{province}:{day:%Y%m%d}"}, {"$inc": {"seq": 1}},
                                            upsert=True, return_document=ReturnDocument.AFTER)
    if int(doc["seq"]) > 9999:
        raise AttachmentRefused(f"{province} has used all 9999 names of {day}", "name", 400)
    return f"{day:%Y%m%d}{int(doc['seq']):04d}.{ext}"


async def upload(db: AsyncIOMotorDatabase[Any], settings: Settings, connection: SftpConnection, province: str,
                 data: bytes, *, name: str | None = None, kind: Kind = "form", order_id: str | None = None,
                 who: str = "") -> dict[str, Any]:
    """Check, upload (``.part`` + rename) and record one attachment; returns its path only once it is there."""
    found = sniff(data)
    if name is None:
        name = await next_name(db, province, datetime.now(UTC).date(), "pdf" if found == "pdf" else "jpg")
    check(name, data, kind)
    path = remote_path(province, name)
    digest = hashlib.sha256(data).hexdigest()
    before = await db[ATTACHMENTS].find_one({"_id": path})
    if before is not None:
        if before.get("sha256") == digest:
            return {"path": path, "bytes": len(data), "sha256": digest, "duplicate": True}
        raise AttachmentRefused(f"{path} exists with other content", "name", 409)
    session = SftpSession(connection, settings)
    try:
        sftp = await session.client()
        remote = session.path(path)
        await sftp.makedirs(posixpath.dirname(remote), exist_ok=True)
        async with sftp.open(remote + ".part", "wb") as fh:
            await fh.write(data)
        await sftp.posix_rename(remote + ".part", remote)
    finally:
        await session.close()
    doc = {"_id": path, "province": province, "name": name, "kind": kind, "type": found, "bytes": len(data),
           "sha256": digest, "order_id": order_id, "by": who, "at": datetime.now(UTC)}
    await db[ATTACHMENTS].insert_one(doc)
    return {"path": path, "bytes": len(data), "sha256": digest, "duplicate": False}
