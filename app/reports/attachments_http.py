"""``POST /api/v1/attachments/{province}`` — upload a form or photo under the seed-003 rule
(app/reports/attachments.py) and answer the path it got, for the stage that must carry it.

The body is the file itself (any ``Content-Type``: the type is decided by its bytes). Query:
``name`` (``yyyymmdd####.pdf``; default the next free name of today), ``kind`` (``form`` ≤ 10 MB PDF/JPEG,
``photo`` ≤ 300 KB JPEG), ``order_id`` (recorded with it). Operator token. Refusals are problem
documents naming the rule — 400 name, 413 size, 415 type, 409 the name holds other content — each
logged and counted (``hub_attachment_refusals_total``). The body is read from the stream with the
rule's own limit (the intake's ``client_max_size`` is far below 10 MB).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from app.admin.api import _tokens, _who
from app.reports.attachments import MAX_BYTES, AttachmentRefused, Kind, upload
from connectors.sftp.config import SftpConnection
from hub.auth import requires
from hub.problem import problem
from hub.services import SERVICES

log = logging.getLogger(__name__)
REFUSALS = Counter("hub_attachment_refusals_total", "Refused attachment uploads by rule", ["field", "status"])
PATH = "/api/v1/attachments/{province}"


async def _read(request: web.Request) -> bytes:
    data = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        data += chunk
        if len(data) > MAX_BYTES:
            raise AttachmentRefused(f"over the limit of {MAX_BYTES} bytes", "content", 413)
    return bytes(data)


async def upload_attachment(request: web.Request) -> web.StreamResponse:
    runtime = request.app[SERVICES]
    if runtime.db is None:
        return problem(503, "Service Unavailable", "MongoDB not connected", headers={"Retry-After": "5"})
    province = request.match_info["province"]
    kind: Any = request.query.get("kind", "form")
    try:
        if kind not in ("form", "photo"):
            raise AttachmentRefused(f"kind {kind!r} is not form or photo", "kind")
        data = await _read(request)
        chosen: Kind = kind
        result = await upload(runtime.db, runtime.settings, SftpConnection(embedded=True), province, data,
                              name=request.query.get("name"), kind=chosen, order_id=request.query.get("order_id"),
                              who=_who(request))
    except AttachmentRefused as exc:
        REFUSALS.labels(exc.errors[0]["field"], str(exc.status)).inc()
        log.warning("attachment for %s refused (%s): %s", province, exc.errors[0]["field"], exc)
        return problem(exc.status, _title(exc.status), str(exc),
                       errors=exc.errors)
    log.info("attachment %s uploaded by %s (%s bytes)", result["path"], _who(request), result["bytes"])
    return web.Response(status=200 if result["duplicate"] else 201, body=json.dumps(result).encode(),
                        content_type="application/json")


def _title(status: int) -> str:
    return {400: "Bad Request", 409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type"}[status]


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, requires("operator", _tokens)(upload_attachment))
