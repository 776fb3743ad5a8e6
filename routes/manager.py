"""Run the configured routes, and reload changed route files without a restart.

Each route runs as: sink (if the target is a partner sink) started → source started with the
route's :class:`~routes.pipeline.RouteEmit`. The manager polls ``config/routes/`` (default every
2 s; in a worker thread: ``stat`` first, then content digest and parse of what changed — no file
or YAML work on the event loop): a changed valid file replaces its route (old stopped, new started); a changed
*invalid* file is rejected — the old route keeps running, the error is logged and shown on
``/readyz`` under ``routes``; a deleted file stops its route. A route whose source cannot start
(server down) is tried again on the polls, backing off (``ROUTE_RELAUNCH``: after 1, 2, 4 … polls,
at most every 30 s), so routes come up when their partner does.

A running route's background work (Kafka consumer, SFTP poller, AMQP consumer) is supervised
(``connectors/supervision.py``): when it dies it is restarted with backoff, and the route shows
``restarting`` — then ``failed`` if it keeps dying — on ``/readyz`` and as 0 in ``hub_route_up``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from connectors.base import Sink, Source
from connectors.context import ConnectorContext, cancel_task
from connectors.registry import registry
from connectors.supervision import FAILED, RESTARTING, RUNNING, Supervised
from hub.deadletter import DeadLetters
from hub.errors import ConfigError
from hub.retrying import ROUTE_RELAUNCH
from hub.stopping import cancel_until_done
from routes.loader import RouteFile, implied_rest_routes, load_route_file, load_routes, routes_dir
from routes.pipeline import RouteEmit, route_sink_chain
from routes.replays import RouteReplays

if TYPE_CHECKING:
    from hub.services import Services

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 5.0
RACY_S = 1.0  # a file modified this recently is re-read even when its stat looks unchanged
ROUTE_UP = Gauge("hub_route_up", "1 while the route runs, 0 when failed/stopped/disabled", ["route", "connector"])
ROUTE_RELOADS = Counter("hub_route_reloads_total", "route file changes applied or rejected", ["outcome"])


def _with_partner_settings(source: Any, partners: dict[str, Any]) -> Any:
    """A source config that takes a crypto contract (REST, SOAP, AMQP) gets its partner's ``crypto:``
    block, and one that takes a ``rate_limit`` the partner's ``inbound.rest.rate_limit`` when the
    route sets none — so the partner file is the one place they are declared, for a route file and
    an implied route alike."""
    fields = type(source).model_fields
    partner = partners.get(getattr(source, "partner", ""))
    crypto = getattr(partner, "crypto", None)
    limit = getattr(getattr(getattr(partner, "inbound", None), "rest", None), "rate_limit", None)
    update: dict[str, Any] = {}
    if "crypto" in fields and source.crypto is None and crypto is not None:
        update["crypto"] = crypto
    if "rate_limit" in fields and source.rate_limit is None and limit is not None:
        update["rate_limit"] = limit
    return source.model_copy(update=update) if update else source


@dataclass
class RouteRunner:
    file: RouteFile
    source: Source | None = None
    sink: Sink | None = None
    replays: RouteReplays | None = None  # consumer of its replayed dead letters (sink targets)
    replays_task: Supervised | None = None
    emit: RouteEmit | None = None
    context: ConnectorContext | None = None  # what the source and sink were built with (its supervised tasks)
    state: str = "stopped"  # running | restarting | failed | disabled | stopped
    error: str | None = None
    started_at: float | None = None
    launch_failures: int = 0  # starts that failed in a row (ROUTE_RELAUNCH backs off on them)
    next_launch: float = 0.0  # time.monotonic() before which a failed start is not tried again

    @property
    def name(self) -> str:
        return self.file.route.name

    @property
    def needs_launch(self) -> bool:
        """Failed to start, and due again (``ROUTE_RELAUNCH``: after 1, 2, 4 … polls); a running source
        whose task keeps failing is its supervisor's business (``connectors/supervision.py``), not
        launched a second time."""
        return self.state == FAILED and self.source is None and time.monotonic() >= self.next_launch

    @property
    def restarts(self) -> int:
        """How often the source's supervised tasks were restarted since the route started."""
        return sum(t.restarts for t in self.context.supervised) if self.context is not None else 0

    def set_state(self, state: str, error: str | None = None) -> None:
        self.state, self.error = state, error
        ROUTE_UP.labels(self.name, self.file.route.source.connector).set(
            1 if state == "running" else 0)


@dataclass(frozen=True)
class Scanned:
    """One route file as a reload saw it (built in a worker thread by ``RouteManager._scan``)."""

    digest: str | None  # None: could not be read this time
    file: RouteFile | None = None  # parsed: the content is new
    problems: list[str] | None = None  # or why the new content does not load


@dataclass
class Rejected:
    path: str
    problems: list[str]
    digest: str = ""  # content that was rejected: not re-read until it changes
    at: float = field(default_factory=time.time)


class RouteManager:
    def __init__(self, runtime: Services, *, poll_interval: float = 2.0) -> None:
        self.runtime = runtime
        self.poll_interval = poll_interval
        self.relaunch = ROUTE_RELAUNCH.with_delay(poll_interval)  # a failed start: tried again after 1, 2, 4 … polls
        self.runners: dict[str, RouteRunner] = {}  # by path (or "implied:<name>")
        self.rejected: dict[str, Rejected] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._seen: dict[str, tuple[tuple[int, int, int], str]] = {}  # path → (stat, digest) of the last poll

    @property
    def folder(self) -> Path:
        return routes_dir(self.runtime.settings.config_dir)

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, *, watch: bool = True) -> None:
        # reading and parsing every route file is blocking YAML work: in a thread, like every reload
        loaded, problems = await asyncio.to_thread(load_routes, self.runtime.settings.config_dir)
        for problem in problems:
            log.error("route not loaded: %s", problem)
            path = problem.split(":", 1)[0]
            try:
                digest = await asyncio.to_thread(_digest, Path(path))
            except OSError:
                digest = ""
            self.rejected.setdefault(path, Rejected(path, [], digest)).problems.append(problem)
        files = {str(p): rf for p, rf in loaded.items()}
        declared = [rf.route for rf in loaded.values()]
        for rf in implied_rest_routes(self.runtime.partners, declared, self.runtime.settings.intake_max_body_bytes,
                                      self.runtime.settings.config_dir):
            files[f"implied:{rf.route.name}"] = rf
        async with self._lock:
            for key, rf in files.items():
                await self._start(key, rf)
        if watch and self._task is None:
            self._task = asyncio.create_task(self._watch(), name="route-reloader")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)
            self._task = None
        async with self._lock:
            for key in list(self.runners):
                await self._stop(key)

    def context(self, runner: RouteRunner) -> ConnectorContext:
        rt = self.runtime
        route: Any = runner.file.route
        return ConnectorContext(rt.settings, runner.name, rt.db, rt.producer, rt.connector_tables,
                                transform=route.transform, on_health=lambda task: self._health(runner, task))

    def _health(self, runner: RouteRunner, task: Supervised) -> None:
        """A supervised source task changed state: the route shows it (readiness, hub_route_up)."""
        if runner.source is None or all(r is not runner for r in self.runners.values()):
            return  # still starting (_launch reports how that went), or replaced/stopped
        if task.state in (RESTARTING, FAILED):
            runner.set_state(task.state, f"{task.name}: {task.error}")
        elif task.state == RUNNING and runner.state in (RESTARTING, FAILED):
            runner.set_state(RUNNING)

    async def _start(self, key: str, rf: RouteFile) -> RouteRunner:
        route: Any = rf.route
        runner = RouteRunner(rf)
        self.runners[key] = runner
        if not route.enabled:
            runner.set_state("disabled")
            return runner
        await self._launch(runner)
        return runner

    async def _launch(self, runner: RouteRunner) -> None:
        route: Any = runner.file.route
        rt = self.runtime
        ctx = runner.context = self.context(runner)
        try:
            sink_cfg = getattr(route.target, "sink", None)
            if sink_cfg is not None and runner.sink is None:
                policy = route.target.policy  # the sink's client gets the route's timeout and concurrency
                runner.sink = registry.new_sink(sink_cfg.connector, sink_cfg, replace(
                    ctx, timeout_s=policy.timeout_s, concurrency=policy.concurrency))
                await runner.sink.start()
            dead = DeadLetters(rt.db, rt.producer) if rt.db is not None else None
            chain = await route_sink_chain(route, runner.sink, rt) if runner.sink else None
            runner.emit = RouteEmit(route, prefix=rt.settings.topic_prefix, intake=rt.intake, producer=rt.producer,
                                    dead_letters=dead, sink=chain, db=rt.db)
            if chain is not None and rt.db is not None and runner.replays is None:
                # its replayed dead letters come back through the same chain (routes/replays.py)
                runner.replays = RouteReplays(route.name, chain, rt)
                runner.replays_task = ctx.supervise("route-replays", runner.replays.run)
            if runner.emit.topic:
                await rt.ensure_topic(runner.emit.topic)
            source = registry.new_source(route.source.connector, _with_partner_settings(route.source, rt.partners), ctx)
            await source.start(runner.emit)
            runner.source = source
            runner.set_state("running")
            runner.started_at = time.time()
            runner.launch_failures = 0
            log.info("route %s running (%s → %s)", route.name, route.source.connector,
                     runner.emit.topic or f"sink {route.target.sink.connector}")
        except Exception as exc:
            runner.set_state("failed", f"{type(exc).__name__}: {exc}")
            runner.launch_failures += 1
            wait = self.relaunch.delay(runner.launch_failures)
            runner.next_launch = time.monotonic() + wait
            log.error("route %s could not start: %s (next try in %.0fs)", route.name, runner.error, wait)

    async def _stop(self, key: str) -> None:
        runner = self.runners.pop(key, None)
        if runner is None:
            return
        await cancel_task(runner.replays_task)  # before the sink it delivers through
        runner.replays_task = None
        for part in (runner.source, runner.sink):
            if part is not None:
                try:  # a partner server that is gone must not hold up the hub's shutdown
                    await asyncio.wait_for(part.stop(), STOP_TIMEOUT_S)
                except Exception as exc:
                    log.warning("route %s: error while stopping %s: %r", runner.name, part, exc)
        runner.set_state("stopped")

    # --- hot reload ------------------------------------------------------------------------
    async def reload(self) -> list[str]:
        """Apply changed, new and deleted route files; returns what changed (for logs and tests)."""
        changes: list[str] = []
        async with self._lock:
            known: dict[str, set[str]] = {k: {r.file.digest} for k, r in self.runners.items()}
            for k, r in self.rejected.items():
                known.setdefault(k, set()).add(r.digest)
            current = await asyncio.to_thread(self._scan, known)  # no file or YAML work on the loop
            for key in [k for k in self.runners if not k.startswith("implied:") and k not in current]:
                changes.append(f"removed {self.runners[key].name}")
                await self._stop(key)
                self.rejected.pop(key, None)
            for key, scanned in current.items():
                path = Path(key)
                runner = self.runners.get(key)
                digest = scanned.digest
                if digest is None:
                    continue  # unreadable right now (being replaced): next poll
                if runner is not None and runner.file.digest == digest:
                    self.rejected.pop(key, None)  # an invalid edit was reverted
                    if runner.needs_launch:
                        await self._launch(runner)
                    continue
                rejected = self.rejected.get(key)
                if rejected is not None and rejected.digest == digest:
                    continue  # the same bad content: already reported
                try:
                    if scanned.problems is not None:
                        raise ConfigError("invalid route file", scanned.problems)
                    assert scanned.file is not None  # new content is always parsed by _scan
                    rf = scanned.file
                    other = [r for k, r in self.runners.items() if k != key and r.name == rf.route.name]
                    if other:
                        raise ConfigError("duplicate route", [f"{path}: name: route {rf.route.name!r} "
                                                              f"is already declared by {other[0].file.path}"])
                except ConfigError as exc:
                    problems = exc.problems or [str(exc)]
                    log.error("route file %s rejected, %s: %s", path,
                              "previous version keeps running" if runner else "not started", "; ".join(problems))
                    self.rejected[key] = Rejected(key, problems, digest)
                    ROUTE_RELOADS.labels("rejected").inc()
                    continue
                self.rejected.pop(key, None)
                if runner is not None:
                    await self._stop(key)
                    changes.append(f"reloaded {rf.route.name}")
                else:
                    changes.append(f"added {rf.route.name}")
                await self._start(key, rf)
                await asyncio.sleep(0)  # many files changed at once: let requests in between routes
            declared_rest = {r.file.route.source.partner for k, r in self.runners.items()
                             if not k.startswith("implied:") and r.file.route.source.connector == "rest"}
            for key, runner in list(self.runners.items()):
                if not key.startswith("implied:"):
                    continue
                if runner.file.route.source.partner in declared_rest:
                    changes.append(f"removed {runner.name} (a route file now declares this REST intake)")
                    await self._stop(key)
                elif runner.needs_launch:
                    await self._launch(runner)
        for change in changes:
            log.info("routes: %s", change)
            ROUTE_RELOADS.labels("applied").inc()
        return changes

    def _scan(self, known: dict[str, set[str]]) -> dict[str, Scanned]:
        """In a worker thread: list the folder, ``stat`` every file, and read, hash and parse only
        what changed. Why stat first: the reloader polls every 2 s for the life of the process,
        and re-reading and hashing every file each time is wasted I/O; a file whose (mtime, size,
        inode) is the last poll's keeps its digest. A file modified within the last second is read
        anyway (an edit within the file system's timestamp granularity keeps the mtime). Content
        whose digest is ``known`` (running, or already rejected) is not parsed again."""
        folder = self.folder
        seen: dict[str, tuple[tuple[int, int, int], str]] = {}
        out: dict[str, Scanned] = {}
        now = time.time()
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            key = str(path)
            try:
                st = path.stat()
                sig = (st.st_mtime_ns, st.st_size, st.st_ino)
                last = self._seen.get(key)
                digest = last[1] if last is not None and last[0] == sig else _digest(path)
            except OSError:
                out[key] = Scanned(None)
                continue
            if now - st.st_mtime > RACY_S:
                seen[key] = (sig, digest)
            if digest in known.get(key, ()):
                out[key] = Scanned(digest)
                continue
            try:
                rf = load_route_file(path)
            except ConfigError as exc:
                out[key] = Scanned(digest, problems=exc.problems or [str(exc)])
                continue
            out[key] = Scanned(rf.digest, file=rf)
        self._seen = seen
        return out

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.reload()
            except Exception:
                log.exception("route reload failed")

    # --- health ----------------------------------------------------------------------------
    def readiness(self) -> dict[str, Any]:
        routes = {
            r.name: {"state": r.state, "source": r.file.route.source.connector,
                     "file": str(r.file.path) if r.file.path else "implied", **({"error": r.error} if r.error else {}),
                     **({"restarts": n} if (n := r.restarts) else {})}
            for r in self.runners.values()
        }
        rejected = [{"file": r.path, "problems": r.problems} for r in self.rejected.values()]
        # A partner's server being down (a failed route) or a rejected reload does not make the hub
        # unready — its other routes still take traffic; both are listed here for operators.
        degraded = sorted(n for n, r in routes.items() if r["state"] in (FAILED, RESTARTING))
        return {"ok": True, "degraded": degraded, "routes": routes, "rejected": rejected}


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
