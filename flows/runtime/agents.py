"""Wiring of the v2 runtime into the worker: the runner, its library of blueprints, the sweeps.

The flow-engine agent (flows/agents.py) hands every event of a v2 order to :class:`FlowRunner`;
this module builds it and registers the sweeps as Faust timers. A sweep never raises: an exception
escaping a Faust timer stops the app, and a sweep that failed once (MongoDB away) simply runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from flows.runtime.runner import FlowRunner
from flows.runtime.sweeps import Sweeps
from flows.settings import FlowSettings
from hub.errors import ConfigError
from hub.services import ServiceKey, Services

log = logging.getLogger(__name__)
FLOW_RUNNER_V2: ServiceKey[FlowRunner] = ServiceKey("flow_runner_v2")
LIBRARY: ServiceKey[Any] = ServiceKey("flow_library")


def load_v2_library(runtime: Services) -> Any:
    """The v2 blueprints of ``config/flows`` (flows/graph/library.py), validated against the partners."""
    lib = runtime.get(LIBRARY)
    if lib is None:
        from flows.graph.check import partner_operations
        from flows.graph.library import load_library

        lib = runtime.put(LIBRARY, load_library(runtime.settings.config_dir, partner_operations(runtime.partners)))
    return lib


async def pinned_blueprint(runtime: Services, doc: dict[str, Any]) -> Any:
    """The blueprint version an order pinned, in any process (the worker's runner when there is one,
    else the library and then MongoDB ``blueprint_versions``); None for an order that has none."""
    runner = runtime.get(FLOW_RUNNER_V2)
    if runner is not None:
        return await runner.blueprint(doc)
    digest = doc.get("digest")
    if digest is None:
        return None
    bp = load_v2_library(runtime).by_digest(digest)
    if bp is None:
        from flows.graph.library import restore
        from flows.runtime.store import OrderStoreV2

        assert runtime.db is not None
        raw = await OrderStoreV2(runtime.db).version(digest)
        if raw is None:
            raise ConfigError(f"blueprint {doc.get('blueprint')} version {digest} is unknown")
        bp = restore(raw, digest)
    return bp


def build_runner(runtime: Services, fs: FlowSettings, callback_base_url: str) -> FlowRunner:
    runner = FlowRunner(runtime, load_v2_library(runtime), fs, callback_base_url)
    runtime.put(FLOW_RUNNER_V2, runner)
    return runner


def _never_raises(name: str, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def tick() -> None:
        try:
            await fn()
        except Exception as exc:
            log.warning("%s failed (%s: %s); it runs again on the next tick", name, type(exc).__name__, exc)

    return tick


def register_sweeps(app: faust.App, runner: FlowRunner) -> Sweeps:
    sweeps = Sweeps(runner)
    fs = runner.fs

    async def recovery() -> None:
        await sweeps.full_scan_if_needed()

    app.timer(fs.timer_sweep_s, name="flow-timers")(_never_raises("timer sweep", sweeps.timers))
    app.timer(fs.outbox_sweep_s, name="flow-outboxes")(_never_raises("outbox sweep", sweeps.outboxes))
    app.timer(fs.recovery_interval_s, name="flow-recovery-v2")(_never_raises("flow recovery", recovery))
    return sweeps
