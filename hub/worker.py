"""One hub process: the Faust worker plus the HTTP server, sharing one Runtime.

``mode``'s Worker gives us signal handling: Ctrl-C / SIGTERM stop the HTTP server (no new
intake), then the agents (offsets committed), then close Kafka and MongoDB clients.
"""

from __future__ import annotations

import logging

import faust
from aiohttp import web
from mode import Service

from hub.app import create_app
from hub.runtime import Runtime
from hub.settings import Settings
from hub.web import build_web_app

log = logging.getLogger(__name__)


class HubService(Service):
    """Starts the runtime and the HTTP server; stops them in reverse order."""

    def __init__(self, runtime: Runtime, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runtime = runtime
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        await self.runtime.start()
        app = build_web_app(self.runtime, manage_runtime=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        s = self.runtime.settings
        await web.TCPSite(self._runner, s.http_host, s.http_port).start()
        log.info("HTTP server listening on http://%s:%s", s.http_host, s.http_port)
        print(f"hub: HTTP on http://{s.http_host}:{s.http_port}  (intake, /healthz, /readyz, /metrics)", flush=True)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.runtime.stop()


def run_worker(settings: Settings) -> None:
    """Block until SIGINT/SIGTERM."""
    runtime = Runtime(settings)
    (settings.data_dir / "faust" / settings.worker_id).mkdir(parents=True, exist_ok=True)
    app = create_app(runtime)
    worker = faust.Worker(app, HubService(runtime), loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
