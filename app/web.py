"""The hub's HTTP server (aiohttp): intake endpoints, health, metrics — one app, one port.

Routes, by who calls them:
  partners   POST /api/v1/partners/{partner}/orders        (connectors/rest/source.py)
  probes     GET  /healthz (process up) · GET /readyz (Kafka and MongoDB answer)
  Prometheus GET  /metrics
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import plugins
from app.runtime import Runtime
from connectors.rest import source as rest_source
from hub.services import SERVICES

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
"""The runtime itself, for the root's own handlers; every other layer reads ``hub.services.SERVICES``."""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[RUNTIME].readiness()
    ok = all(c["ok"] for c in checks.values())
    return web.json_response({"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    from app.admin.gauges import refresh  # state gauges (pending dead letters, in-flight orders, lag)

    await refresh(request.app[RUNTIME])
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_web_app(runtime: Runtime, *, manage_runtime: bool = True) -> web.Application:
    """The aiohttp application. ``manage_runtime``: start/stop the runtime with the app."""
    app = web.Application(client_max_size=runtime.settings.intake_max_body_bytes + 65536)
    app[RUNTIME] = runtime
    app[SERVICES] = runtime
    app[rest_source.ENDPOINTS] = runtime.connector_tables.setdefault("rest", {})
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for module in plugins.load(plugins.ROUTE_MODULES):
        module.add_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
        await runtime.start_routes()  # REST intake is one route connector among the others
        yield
        if manage_runtime:
            await runtime.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
