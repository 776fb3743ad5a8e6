"""The hub's HTTP server (aiohttp): intake endpoints, health, metrics — one app, one port (plus, with
``HUB_HTTP_PROBE_PORT``, the same app on a port of this process alone).

What it serves follows the process's role (``HUB_ROLE``, app/worker.py): ``all`` and ``intake`` every
module of ``app.plugins.ROUTE_MODULES`` and the routes; ``worker`` only the probes, ``/metrics`` and
``/openapi.json``, plus the background work of ``app.plugins.WORKER_WEB_MODULES`` — partners, callbacks,
operators and the console go to the intake processes (docs/deploy.md "Processes").

Routes, by who calls them:
  partners   POST /api/v1/partners/{partner}/orders        (connectors/rest/source.py)
  probes     GET  /healthz (process up) · GET /readyz (Kafka and MongoDB answer; no addresses or paths)
  operators  GET  /admin/v1/readiness (/readyz in full: addresses, route files, problems; viewer token)
  Prometheus GET  /metrics
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import openapi, plugins, slowclients
from app.runtime import Runtime
from connectors import tls
from connectors.rest import source as rest_source
from hub.auth import requires
from hub.problem import problem
from hub.services import SERVICES
from hub.settings import Settings

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
"""The runtime itself, for the root's own handlers; every other layer reads ``hub.services.SERVICES``."""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Unauthenticated (load balancers, orchestrators): whether each dependency answers, the routes'
    names and states — no server addresses, config paths or error texts (those name hosts and
    files); the full picture is ``GET /admin/v1/readiness`` (viewer token)."""
    runtime = request.app[RUNTIME]
    checks = await runtime.readiness()
    ok = all(c["ok"] for c in checks.values())
    return web.json_response({"status": "ready" if ok else "not ready", "role": runtime.settings.role,
                              "checks": public_checks(checks)}, status=200 if ok else 503)


def public_checks(checks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``checks`` without what only operators may see: ``url`` and ``error`` of each dependency, a
    route's ``file`` and ``error``, a rejected file's path and problem texts (their count is kept)."""
    out: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        if name == "routes":
            out[name] = {
                "ok": check.get("ok"), "degraded": check.get("degraded", []),
                "routes": {r: {k: v for k, v in info.items() if k in ("state", "source", "restarts")}
                           for r, info in (check.get("routes") or {}).items()},
                "rejected": [{"file": Path(str(r.get("file", ""))).name, "problems": len(r.get("problems") or [])}
                             for r in check.get("rejected") or []],
            }
        else:
            out[name] = {k: v for k, v in check.items() if k not in ("url", "error")}
    return out


@requires("viewer", lambda request: request.app[RUNTIME].settings.admin_tokens)
async def readiness(request: web.Request) -> web.Response:
    """``/readyz`` in full, for operators: addresses, config files, every problem text."""
    runtime = request.app[RUNTIME]
    checks = await runtime.readiness()
    ok = all(c["ok"] for c in checks.values())
    return web.json_response({"status": "ready" if ok else "not ready", "role": runtime.settings.role,
                              "checks": checks})


async def metrics(request: web.Request) -> web.Response:
    from app.admin.gauges import refresh  # state gauges (pending dead letters, in-flight orders, lag)

    await refresh(request.app[RUNTIME])
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """``Server: hub`` instead of aiohttp's ``Python/3.x aiohttp/3.y`` (set before aiohttp's default):
    a probe learns no versions to match against advisories."""
    response.headers["Server"] = "hub"


@web.middleware
async def _problem_answers(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own refusals as problem+json, like every other error the hub answers.

    aiohttp answers an unknown path (404), a wrong method (405) and a body over
    ``client_max_size`` (413, raised inside whichever handler reads the body) with a ``text/plain``
    line; a client that parses problem+json for every 4xx got no ``title``/``status`` (found by
    schemathesis on the admin endpoints). Only those plain-text exceptions are rewritten: a handler
    that answers with a body of its own (problem+json, a SOAP fault) is left as it is."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type != "text/plain":
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return problem(exc.status, exc.reason, exc.text if exc.text and not exc.text.startswith(f"{exc.status}:")
                       else None, headers=headers or None)


def build_web_app(runtime: Runtime, *, manage_runtime: bool = True) -> web.Application:
    """The aiohttp application for the runtime's role. ``manage_runtime``: start/stop the runtime with the app."""
    intake = runtime.settings.role != "worker"
    deadline = slowclients.body_deadline(runtime.settings.http_body_timeout_s)
    app = web.Application(client_max_size=runtime.settings.intake_max_body_bytes + 65536,
                          middlewares=[_problem_answers, deadline])
    app.on_response_prepare.append(_server_header)
    app[RUNTIME] = runtime
    app[SERVICES] = runtime
    app[rest_source.ENDPOINTS] = runtime.connector_tables.setdefault("rest", {})
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/admin/v1/readiness", readiness)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(openapi.OPENAPI_PATH, openapi.endpoint())  # unauthenticated: app/openapi.py says why
    if intake:
        for module in plugins.load(plugins.ROUTE_MODULES):
            module.add_routes(app)
    else:  # role worker: no intake, callbacks or admin API; the background work some modules start with HTTP
        for module in plugins.load(plugins.WORKER_WEB_MODULES):
            module.add_worker_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
        if intake:
            await runtime.start_routes()  # REST intake is one route connector among the others
        yield
        if manage_runtime:
            await runtime.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


async def listener_tls(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS context when ``HUB_HTTP_TLS_CERT``/``_KEY`` are set (connectors/tls.py), else None:
    plain HTTP, the embedded default. Built in a thread (it reads files and parses the key)."""
    if settings.http_tls_cert is None or settings.http_tls_key is None:
        return None
    return await asyncio.to_thread(tls.server_context, settings.http_tls_cert, settings.http_tls_key,
                                   settings.http_tls_client_ca)


async def serve(app: web.Application, settings: Settings, port: int | None = None) -> web.AppRunner:
    """Start ``app`` on ``settings.http_host`` and ``port`` (default ``settings.http_port``) with the
    slow-client bounds (app/slowclients.py), over TLS when configured (:func:`listener_tls`); the
    caller stops it with ``runner.cleanup()``.

    ``HUB_HTTP_REUSE_PORT``: that listener is bound with ``SO_REUSEPORT``, so the other processes of
    the host that set it too listen on the same port. ``HUB_HTTP_PROBE_PORT``: the same app also on
    that port, bound without it (this process's own: probes and ``/metrics`` reach this one)."""
    context = await listener_tls(settings)  # a bad certificate stops the start before anything listens
    runner = web.AppRunner(app, access_log=None, **slowclients.server_options(settings))
    await runner.setup()
    try:
        await slowclients.site(runner, settings, settings.http_host, settings.http_port if port is None else port,
                               context, reuse_port=settings.http_reuse_port).start()
        if settings.http_probe_port is not None and port is None:
            await slowclients.site(runner, settings, settings.http_host, settings.http_probe_port, context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
