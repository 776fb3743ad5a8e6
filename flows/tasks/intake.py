"""Where wireless parameter tasks come in (P36.1): an ARAN file on SFTP, or a REST batch.

- SFTP: the ARAN workbench's file drop (``sftp:`` in config/tasks/wireless.yaml) is polled by the
  ordinary SFTP source (claim, streamed spool, checksum dedupe, whole-file validation, processed/ or
  failed/ with a reason), whose ``Emit`` here stores the records as task chunks instead of producing
  one Kafka envelope per record. One file = one batch ``file-<sha256[:24]>``.
- REST: ``POST /api/v1/network-tasks/wireless`` ``{batch_id, tasks: [...]}`` with the ARAN workbench's
  API key → 202 ``{batch_id, received, duplicate}``; 400 problem+json naming ``tasks[i].field``;
  ``GET /api/v1/network-tasks/wireless/{batch_id}`` → its counters, failed tasks and anomalies.

The pipeline (flows/tasks/pipeline.py) is built on first use in the process (a worker starts it, and the
file drop, with its HTTP server) and stopped with the HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faust
from aiohttp import web

from connectors.context import ConnectorContext
from connectors.sftp.source import SftpSource
from flows.tasks.model import WirelessTaskSettings, load_settings, parse_task
from flows.tasks.nms import NmsClient
from flows.tasks.pipeline import TaskPipeline
from hub.envelope import Envelope
from hub.errors import ConfigError, RetryableError, ValidationFailed
from hub.intake import Accepted
from hub.metrics import INTAKE_REQUESTS
from hub.problem import problem
from hub.services import SERVICES, ServiceKey, Services

log = logging.getLogger(__name__)

PATH = "/api/v1/network-tasks/wireless"
PIPELINE: ServiceKey[TaskPipeline] = ServiceKey("wireless_task_pipeline")
MAX_ERRORS = 50
_locks: dict[int, asyncio.Lock] = {}  # per event loop: a lock is bound to the loop that first waits on it


def settings_of(services: Services) -> WirelessTaskSettings | None:
    return load_settings(Path(services.settings.config_dir))


async def pipeline_for(services: Services) -> TaskPipeline:
    """The process's pipeline, built and started on first use (HTTP or the SFTP poller)."""
    found = services.get(PIPELINE)
    if found is not None and found.running:
        return found
    async with _locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock()):
        found = services.get(PIPELINE)
        if found is not None and found.running:
            return found
        settings = settings_of(services)
        if settings is None:
            raise ConfigError("no config/tasks/wireless.yaml: wireless tasks are not configured")
        if services.db is None:
            raise RetryableError("MongoDB not connected")
        partner = services.partners.get(settings.nms_partner)
        if partner is None:
            raise ConfigError(f"config/tasks/wireless.yaml: nms_partner: no partner {settings.nms_partner!r}")
        policy = partner.outbound.policy if partner.outbound else None
        pipeline = TaskPipeline(services.db, NmsClient(partner, settings.account, window=settings.window),
                                settings, max_attempts=policy.max_attempts if policy else 5)
        await pipeline.start()
        return services.put(PIPELINE, pipeline)


# --- SFTP ----------------------------------------------------------------------------------------------
class TaskEmit:
    """The SFTP source's ``Emit`` for task files: records are checked as tasks (a bad line rejects the
    whole file before anything is pushed) and stored as chunks of the file's batch."""

    def __init__(self, services: Services, settings: WirelessTaskSettings) -> None:
        self.services = services
        self.settings = settings

    @property
    def can_reject(self) -> bool:
        return True

    def prepare(self, envelope: Envelope) -> Envelope:
        envelope.payload = parse_task(envelope.payload, self.settings)
        return envelope

    async def __call__(self, envelope: Envelope) -> Accepted:
        raise ValidationFailed("task files are taken in batches (publish_batch)")

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[Accepted | BaseException]:
        """Not a queue's batch either: a task file is one batch of chunks (publish_batch)."""
        return [ValidationFailed("task files are taken in batches (publish_batch)") for _ in envelopes]

    async def publish_batch(self, envelopes: Iterable[Envelope]) -> int:
        batch = list(envelopes)
        if not batch:
            return 0
        pipeline = await pipeline_for(self.services)
        batch_id = batch[0].correlation_id
        first = int(batch[0].headers.get("line", "0"))
        await pipeline.add(batch_id, [e.payload for e in batch], first)
        return len(batch)

    async def reject(self, reason: str, envelope: Envelope | None = None, **origin: Any) -> None:
        log.error("wireless task file rejected: %s (%s)", reason, origin.get("file"))


class TaskFileSource(SftpSource):
    """The SFTP source with a batch around each file: opened before its first chunk, closed after its
    last (so the batch completes once every chunk is pushed and judged)."""

    async def _emit_all(self, local: Path, digest: str, name: str, stop: threading.Event) -> int:
        pipeline = await pipeline_for(self.emit_services)
        batch_id = f"file-{digest[:24]}"
        await pipeline.open_batch(batch_id, "sftp", file=name, sha256=digest)
        count = await super()._emit_all(local, digest, name, stop)
        await pipeline.close_batch(batch_id)
        return count

    @property
    def emit_services(self) -> Services:
        emit = self._emit
        if not isinstance(emit, TaskEmit):
            raise RetryableError("source stopping")
        return emit.services


async def start_file_intake(services: Services, settings: WirelessTaskSettings) -> TaskFileSource | None:
    if settings.sftp is None:
        return None
    source = TaskFileSource(settings.sftp, ConnectorContext(services.settings, "aran-wireless-tasks", services.db,
                                                            services.producer, services.connector_tables))
    await source.start(TaskEmit(services, settings))
    return source


WORKER: ServiceKey[bool] = ServiceKey("wireless_task_worker")
STARTER: web.AppKey[asyncio.Task[None]] = web.AppKey("wireless_task_starter", asyncio.Task)
SOURCE: ServiceKey[TaskFileSource] = ServiceKey("wireless_task_file_source")
RETRY_S = 2.0


def register_agents(app: faust.App, runtime: Services) -> None:
    """Plugin hook, called in every worker (``hub run``) before its HTTP server is built: it marks the
    process as one that runs the pipeline and the ARAN file drop. They start with the HTTP server (below),
    not with a Faust timer: a worker's HTTP side is up long before its consumer group has settled."""
    if settings_of(runtime) is not None:
        runtime.put(WORKER, True)


async def _start(app: web.Application) -> None:
    services: Services = app[SERVICES]
    if not services.get(WORKER):
        return
    settings = settings_of(services)
    assert settings is not None

    async def start() -> None:
        while True:  # MongoDB not reachable yet: try again (the intake answers 503 meanwhile)
            try:
                await pipeline_for(services)
                source = await start_file_intake(services, settings)
            except RetryableError as exc:
                log.warning("wireless tasks not started yet: %s; retrying in %.0f s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            if source is not None:
                services.put(SOURCE, source)
            return

    app[STARTER] = asyncio.create_task(start(), name="wireless-tasks-start")


async def _stop(app: web.Application) -> None:
    """Stop taking files (a file being read gives its claim back), then the pushes (a chunk in flight stays
    pending and is pushed again at the next start: the NMS dedupes it by its id)."""
    services: Services = app[SERVICES]
    starter = app.get(STARTER)
    if starter is not None and not starter.done():
        starter.cancel()
    source = services.get(SOURCE)
    if source is not None:
        await source.stop()
    pipeline = services.get(PIPELINE)
    if pipeline is not None:
        await pipeline.stop()


# --- REST ------------------------------------------------------------------------------------------------
def _authorised(request: web.Request, services: Services, settings: WirelessTaskSettings) -> bool:
    partner = services.partners.get(settings.origin_partner)
    rest = partner.inbound.rest if partner is not None and partner.inbound is not None else None
    if rest is None:
        return False
    auth = rest.auth
    check = getattr(auth, "check", None)
    header = getattr(auth, "header", "X-Api-Key")
    return bool(check is not None and check(request.headers.get(header)))


def parse_batch(raw: bytes, settings: WirelessTaskSettings) -> tuple[str, list[dict[str, str]]]:
    """``{batch_id, tasks}`` → the checked tasks (on a thread: 100,000 tasks take ~0.3 s of CPU)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"body must be JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object {batch_id, tasks}")
    batch_id, tasks = body.get("batch_id"), body.get("tasks")
    errors: list[dict[str, Any]] = []
    if not isinstance(batch_id, str) or not 1 <= len(batch_id) <= 64:
        errors.append({"field": "batch_id", "message": "required, 1-64 characters"})
    if not isinstance(tasks, list) or not tasks:
        errors.append({"field": "tasks", "message": "required, a non-empty list"})
    elif len(tasks) > settings.max_batch_tasks:
        errors.append({"field": "tasks", "message": f"more than {settings.max_batch_tasks} tasks"})
    if errors:
        raise ValidationFailed("invalid batch", errors)
    assert isinstance(tasks, list) and isinstance(batch_id, str)
    out: list[dict[str, str]] = []
    ids: set[str] = set()
    for i, raw_task in enumerate(tasks):
        where = f"tasks[{i}]."
        try:
            if not isinstance(raw_task, dict):
                raise ValidationFailed("not an object", [{"field": f"tasks[{i}]", "message": "must be an object"}])
            task = parse_task(raw_task, settings, where)
            if task["task_id"] in ids:
                raise ValidationFailed("duplicate", [{"field": f"{where}task_id",
                                                      "message": f"{task['task_id']!r} appears twice"}])
            ids.add(task["task_id"])
            out.append(task)
        except ValidationFailed as exc:
            errors += exc.errors
            if len(errors) >= MAX_ERRORS:
                break
    if errors:
        raise ValidationFailed("invalid tasks", errors[:MAX_ERRORS])
    return batch_id, out


async def _read(request: web.Request, limit: int) -> bytes | None:
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def post_batch(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    settings = settings_of(services)
    if settings is None:
        return problem(404, "Not Found", "wireless tasks are not configured here")
    partner = settings.origin_partner
    if not _authorised(request, services, settings):
        INTAKE_REQUESTS.labels(partner, "rest", "rejected_auth").inc()
        return problem(401, "Unauthorized", f"a valid {partner} API key is required")
    raw = await _read(request, settings.max_body_bytes)
    if raw is None:
        INTAKE_REQUESTS.labels(partner, "rest", "rejected_too_large").inc()
        return problem(413, "Payload Too Large", f"a batch body is at most {settings.max_body_bytes} bytes")
    try:
        batch_id, tasks = await asyncio.to_thread(parse_batch, raw, settings)
    except ValidationFailed as exc:
        INTAKE_REQUESTS.labels(partner, "rest", "rejected_invalid").inc()
        log.warning("wireless batch refused: %s %s", exc, exc.errors[:3])
        return problem(400, "Bad Request", str(exc), errors=exc.errors)
    try:
        pipeline = await pipeline_for(services)
        new = await pipeline.open_batch(batch_id, "rest")
        received = await pipeline.add(batch_id, tasks, 0)
        await pipeline.close_batch(batch_id)
    except RetryableError as exc:
        INTAKE_REQUESTS.labels(partner, "rest", "unavailable").inc()
        return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})
    except Exception as exc:  # MongoDB down mid-batch: the chunks stored so far stay, a retry adds the rest
        log.exception("wireless batch %s not stored", batch_id)
        INTAKE_REQUESTS.labels(partner, "rest", "unavailable").inc()
        return problem(503, "Service Unavailable", f"batch not stored: {type(exc).__name__}",
                       headers={"Retry-After": "5"})
    INTAKE_REQUESTS.labels(partner, "rest", "accepted" if new else "duplicate").inc()
    return web.json_response({"batch_id": batch_id, "received": received, "tasks": len(tasks),
                              "duplicate": not new, "account": settings.account}, status=202)


async def get_batch(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    settings = settings_of(services)
    if settings is None:
        return problem(404, "Not Found", "wireless tasks are not configured here")
    if not _authorised(request, services, settings):
        return problem(401, "Unauthorized", f"a valid {settings.origin_partner} API key is required")
    try:
        pipeline = await pipeline_for(services)
    except RetryableError as exc:
        return problem(503, "Service Unavailable", str(exc), headers={"Retry-After": "5"})
    doc = await pipeline.batch(request.match_info["batch_id"], details=True)
    if doc is None:
        return problem(404, "Not Found", f"no wireless batch {request.match_info['batch_id']!r}")
    doc["batch_id"] = doc.pop("_id")
    return web.json_response(doc, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, post_batch)
    app.router.add_get(PATH + "/{batch_id}", get_batch)
    add_worker_routes(app)


def add_worker_routes(app: web.Application) -> None:
    """Role ``worker`` (app/plugins.py WORKER_WEB_MODULES): no REST endpoint, but the file drop and the
    pipeline still start and stop with the process's HTTP server."""
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
