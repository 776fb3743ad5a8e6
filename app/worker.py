"""One hub process: the Faust worker plus the HTTP server, sharing one Runtime — or one of the two
halves (``HUB_ROLE`` / ``hub run --role``, docs/deploy.md "Processes"):

* ``all`` (the default): the faust worker and the whole HTTP server with the routes.
* ``intake``: the HTTP server and the routes on ``mode``'s plain Worker; no faust app is built, so no
  agent, consumer group, engine, delivery, sweep or scheduled job runs. Everything it accepts goes to
  Kafka (and the MongoDB journal) exactly as in ``all``: an order to ``{p}.in.{partner}``, a partner
  callback or a manual submission to ``{p}.orders`` (flows/http.py).
* ``worker``: the faust worker, with an HTTP server for ``/healthz``, ``/readyz`` and ``/metrics`` only
  (app/web.py ``build_web_app``), and no routes.

``mode``'s Worker gives us signal handling. On Ctrl-C / SIGTERM, in this order: the HTTP server
and the routes stop (no new intake; a file being ingested gives its claim back), then the agents
(offsets committed), then the Kafka and MongoDB clients close. The whole stop is bounded
(:data:`STOP_TIMEOUT_S`), and a watchdog ends the process if even that hangs
(:data:`HARD_EXIT_S`): an operator or a service manager gives a process ~10 s before SIGKILL,
and faust's own timeouts add up to far more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import faust
import mode
from aiohttp import web
from faust.utils import terminal
from mode import Service
from mode.utils.futures import maybe_cancel

from app.agents import create_app
from app.runtime import Runtime
from app.web import build_web_app, serve
from hub import memory
from hub.settings import Settings

log = logging.getLogger(__name__)

INTAKE_STOP_TIMEOUT_S = 2.0  # HTTP server + routes (sources give their claims back)
STOP_TIMEOUT_S = 5.0  # everything, from the signal: intake, agents, consumer, clients
HARD_EXIT_S = 7.0  # from the signal: the watchdog's deadline for the worker (then hub run stops the servers)
LOOP_GRACE_S = 0.3  # mode waits up to 1 s for leftover tasks, then 1 s more "for the loop": enough with this
MEMORY_RELEASE_S = 30.0  # how often freed heap pages are given back to the OS (hub/memory.py)


class HubService(Service):
    """Starts the runtime and the HTTP server; stops them in reverse order."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        await self.runtime.start()
        app = build_web_app(self.runtime, manage_runtime=False)
        s = self.runtime.settings
        self._runner = await serve(app, s)
        scheme = "https" if s.http_tls else "http"  # HUB_HTTP_TLS_CERT (app/web.py serve)
        ports = f"{s.http_port}" + (" (shared: SO_REUSEPORT)" if s.http_reuse_port else "") + (
            f", probes on {s.http_probe_port}" if s.http_probe_port is not None else "")
        log.info("HTTP server (role %s) listening on %s://%s:%s", s.role, scheme, s.http_host, ports)
        what = "/healthz, /readyz, /metrics" if s.role == "worker" else "intake, /healthz, /readyz, /metrics"
        print(f"hub: {s.role}: HTTP on {scheme}://{s.http_host}:{ports}  ({what})", flush=True)

    @Service.timer(MEMORY_RELEASE_S)
    async def _release_memory(self) -> None:
        """Hand freed heap back to the OS, so RSS falls again after a big file (hub/memory.py)."""
        memory.release()

    async def stop_intake(self) -> None:
        """Stop taking work in: the HTTP server, then every route's source. Idempotent.

        Run before faust stops the agents (faust stops its app before the services it was given),
        so a source in the middle of a file stops first instead of feeding a stopping worker."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        routes, self.runtime.routes = self.runtime.routes, None
        if routes is not None:
            await routes.stop()

    async def on_stop(self) -> None:
        await self.stop_intake()
        await self.runtime.stop()


class BoundedWorker(mode.Worker):
    """``mode``'s Worker with a bounded, ordered shutdown (see the module docstring): the base of both
    process kinds, :class:`HubWorker` (with faust) and :class:`IntakeWorker` (without)."""

    hub: HubService
    _on_hard_exit: Callable[[], None] | None
    watchdog: threading.Timer | None
    spinner: terminal.Spinner | None  # faust's; mode's Worker has none (nothing reads it there)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """No terminal spinner. At WARNING and above faust adds one to the root logger and sets the root
        to DEBUG so that it spins on every record: every debug line of aiokafka and faust was then
        built and formatted, ~12 % of the consumer thread's loop in a 10 MB SFTP ingest with the flows
        running (py-spy, 2026-12-03: ``Fetcher._get_actions_per_node`` → ``makeRecord``), and the
        spinner's escape codes landed in the log file. A service's log is not a terminal."""
        self.spinner = None

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            self.watchdog = threading.Timer(HARD_EXIT_S, self._hard_exit, args=(signal,))
            self.watchdog.daemon = True
            self.watchdog.start()
        super()._schedule_shutdown(signal)

    def _gather_all(self) -> None:
        """mode's version waits up to 1 s for tasks nobody awaits any more; cancel them sooner."""
        deadline = self.loop.time() + LOOP_GRACE_S
        while asyncio.all_tasks(self.loop) and self.loop.time() < deadline:
            self.loop.run_until_complete(asyncio.sleep(0.05))
        for task in asyncio.all_tasks(self.loop):
            task.cancel()

    async def _sentinel_task(self) -> None:
        """mode sleeps a whole second here before closing the loop; one turn is enough."""
        await asyncio.sleep(0.05)

    async def _stop_on_signal(self, signal: signal.Signals) -> None:
        log.info("%s received: stopping (at most %.0f s)", signal.name, STOP_TIMEOUT_S)
        try:
            await asyncio.wait_for(self.hub.stop_intake(), INTAKE_STOP_TIMEOUT_S)
        except Exception as exc:  # includes the timeout: the rest of the stop still has to run
            log.warning("intake did not stop cleanly within %.0f s: %r", INTAKE_STOP_TIMEOUT_S, exc)
        try:
            await asyncio.wait_for(self.stop(), STOP_TIMEOUT_S - INTAKE_STOP_TIMEOUT_S)
        except Exception as exc:
            # Offsets of events still in flight are not committed: they are redelivered on the next
            # start, and the engine applies an event once (idempotency keys, versioned documents).
            log.warning("worker did not stop within %.0f s (%r); exiting anyway", STOP_TIMEOUT_S, exc)
        maybe_cancel(self._starting_fut)

    def _hard_exit(self, signal: signal.Signals) -> None:
        """Last resort, on the watchdog thread: the event loop is stuck (a blocking call)."""
        log.error("still running %.1f s after %s: exiting without a clean stop", HARD_EXIT_S, signal.name)
        try:
            if self._on_hard_exit is not None:
                self._on_hard_exit()
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)


class HubWorker(BoundedWorker, faust.Worker):
    """faust's Worker with the bounded, ordered shutdown: roles ``all`` and ``worker``."""

    def __init__(self, app: faust.App, hub: HubService, *, on_hard_exit: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        faust.Worker.__init__(self, app, hub, **kwargs)
        self.hub = hub
        self._on_hard_exit = on_hard_exit
        self.watchdog = None


class IntakeWorker(BoundedWorker):
    """Role ``intake``: the runtime and the HTTP server with the routes, no faust app at all."""

    def __init__(self, hub: HubService, *, on_hard_exit: Callable[[], None] | None = None, **kwargs: Any) -> None:
        mode.Worker.__init__(self, hub, **kwargs)
        self.hub = hub
        self._on_hard_exit = on_hard_exit
        self.watchdog = None

    async def on_started(self) -> None:
        await super().on_started()
        log.info("intake ready (role intake: no faust agents in this process)")


def run_worker(settings: Settings, on_hard_exit: Callable[[], None] | None = None) -> None:
    """Block until SIGINT/SIGTERM. ``on_hard_exit`` runs if the stop hangs past :data:`HARD_EXIT_S`
    (``hub run`` stops the embedded servers it started there). ``settings.role`` decides what runs."""
    memory.limit_arenas()  # before the clients start their threads
    runtime = Runtime(settings)
    worker: BoundedWorker
    if settings.role == "intake":
        worker = IntakeWorker(HubService(runtime), on_hard_exit=on_hard_exit, loglevel=settings.log_level.lower(),
                              quiet=True)
    else:
        (settings.data_dir / "faust" / settings.worker_id).mkdir(parents=True, exist_ok=True)
        app = create_app(runtime)
        worker = HubWorker(app, HubService(runtime), on_hard_exit=on_hard_exit,
                           loglevel=settings.log_level.lower(), quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if worker.watchdog is not None:  # the worker is down: what is left (the servers) is bounded by itself
            worker.watchdog.cancel()
