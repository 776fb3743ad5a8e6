"""Intake admission from the loaded blueprints: an order nothing can run is refused at intake, and
an order whose product-specific fields (config/products/<product>.yaml, hub/products.py) are missing or
invalid for its scenario is refused with every such field named.

Why here: ``hub/`` and ``connectors/`` must not import ``flows/`` (layering), yet the intake has to
know whether a product/scenario has a flow before it answers 202 — otherwise the order is accepted
and then silently ``failed`` by the engine. The composition root (``app/plugins.py``) asks this
module for a check and hands it to the intake; the check reads the same blueprints the engine
runs (the library service, loaded at start in a thread by :func:`load_at_start` — the web
app's startup — or by the worker; only a process with neither loads them on first use).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hub.envelope import Envelope
from hub.errors import ConfigError, ValidationFailed
from hub.products import check_order
from hub.services import ServiceKey, Services

log = logging.getLogger(__name__)

ORDER_TYPES = frozenset({"order.received"})
#: why the blueprints did not load (set once: the files are not re-read on every request)
LIBRARY_FAILED: ServiceKey[str] = ServiceKey("flow_library_failed")
#: the product field files (hub/products.py), loaded once per process
PRODUCTS: ServiceKey[dict[str, Any]] = ServiceKey("product_fields")
PRODUCTS_FAILED: ServiceKey[str] = ServiceKey("product_fields_failed")
AVAILABLE: ServiceKey[tuple[Any, list[str]]] = ServiceKey("flow_scenarios_available")


def loaded_library(runtime: Any) -> Any:
    """The process's v2 blueprints (flows/graph/library.py), loading them if nothing has; None
    when they do not load (the worker refuses to start then; a web-only process admits, and the
    engine reports later)."""
    from flows.runtime.agents import LIBRARY, load_v2_library

    if runtime.get(LIBRARY) is None and runtime.get(LIBRARY_FAILED) is None:
        try:
            load_v2_library(runtime)
        except ConfigError as exc:
            runtime.put(LIBRARY_FAILED, str(exc))
            log.error("intake admission off: blueprints do not load (%s)", exc)
    return runtime.get(LIBRARY)


def loaded_products(runtime: Any) -> dict[str, Any]:
    """The process's product field files (empty when there are none or they do not load: the error
    is logged once and ``hub flows check`` reports it as ``file:line: key``)."""
    products = runtime.get(PRODUCTS)
    if products is None and runtime.get(PRODUCTS_FAILED) is None:
        from hub.products import load_products

        try:
            products = runtime.put(PRODUCTS, load_products(runtime.settings.config_dir))
        except ConfigError as exc:
            runtime.put(PRODUCTS_FAILED, str(exc))
            log.error("product field checks off: config/products does not load (%s)", exc)
    return products or {}


async def load_at_start(runtime: Services) -> None:
    """Load the blueprints and product files before the first request, in a thread: parsing every
    flow file is blocking YAML and CEL work that must not run on the event loop inside a partner's request."""
    await asyncio.to_thread(lambda: (loaded_library(runtime), loaded_products(runtime)))


def available(library: Any) -> list[str]:
    return sorted(f"{bp.product}/{bp.scenario}" for bp in library if bp.product and bp.scenario)


def known_scenarios(runtime: Any, library: Any) -> list[str]:
    """:func:`available` of the loaded library, computed once per library (a reload makes a new one):
    sorting every blueprint's name for each envelope was a third of an SFTP file's validation pass
    (py-spy, 2026-12-03, 105,102 rows)."""
    cached = runtime.get(AVAILABLE)
    if cached is None or cached[0] is not library:
        cached = runtime.put(AVAILABLE, (library, available(library)))
    return list(cached[1])


def admission(runtime: Any) -> Any:
    """The check the intake calls on every envelope (``hub.intake.Admit``)."""

    def admit(envelope: Envelope) -> None:
        if envelope.type not in ORDER_TYPES or not envelope.product:
            return  # raw records (a route without the canonical model) and events are not orders yet
        library = loaded_library(runtime)
        known = known_scenarios(runtime, library) if library is not None else []
        if not known or library.get(envelope.product, envelope.scenario) is not None:
            product = loaded_products(runtime).get(envelope.product)
            if product is not None and isinstance(envelope.payload, dict):
                check_order(product, str(envelope.scenario), envelope.payload)
            return  # no flows installed (admit everything) or a flow runs it
        message = (f"no flow runs product {envelope.product!r} scenario {envelope.scenario!r}; "
                   f"available: {', '.join(known)}")
        raise ValidationFailed(message, [
            {"field": "scenario", "message": message, "type": "no_blueprint", "product": envelope.product,
             "scenario": envelope.scenario, "available": known},
        ])

    return admit
