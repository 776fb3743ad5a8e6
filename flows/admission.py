"""Intake admission from the loaded blueprints: an order nothing can run is refused at intake.

Why here: ``hub/`` and ``connectors/`` must not import ``flows/`` (layering), yet the intake has to
know whether a product/scenario has a flow before it answers 202 — otherwise the order is accepted
and then silently ``failed`` by the engine. The composition root (``app/plugins.py``) asks this
module for a check and hands it to the intake; the check reads the same blueprints the engine
runs (``runtime.extras["blueprints"]``, loaded once on first use).
"""

from __future__ import annotations

import logging
from typing import Any

from flows.blueprint import Blueprints, load_blueprints
from hub.envelope import Envelope
from hub.errors import ConfigError, ValidationFailed

log = logging.getLogger(__name__)

ORDER_TYPES = frozenset({"order.received"})


def _blueprints(runtime: Any) -> Blueprints | None:
    """The engine's blueprints; None when they do not load (``hub run`` refuses to start then, so
    this only happens in a web-only process: the intake admits, and the engine reports later)."""
    bps = runtime.extras.get("blueprints")
    if bps is None and runtime.extras.get("admission_warned"):
        return None  # already failed to load: do not re-read the files on every request
    if bps is None:
        try:
            bps = runtime.extras["blueprints"] = load_blueprints(runtime.settings.config_dir, runtime.partners)
        except ConfigError as exc:
            runtime.extras["admission_warned"] = True
            log.error("intake admission off: blueprints do not load (%s)", exc)
            return None
    return bps


def available(blueprints: Blueprints) -> list[str]:
    return sorted(f"{bp.product}/{bp.scenario.value}" for bp in blueprints)


def admission(runtime: Any) -> Any:
    """The check the intake calls on every envelope (``hub.intake.Admit``)."""

    def admit(envelope: Envelope) -> None:
        if envelope.type not in ORDER_TYPES or not envelope.product:
            return  # raw records (a route without the canonical model) and events are not orders yet
        blueprints = _blueprints(runtime)
        if blueprints is None or not len(blueprints) or blueprints.get(envelope.product, envelope.scenario) is not None:
            return  # no flows installed: admit everything
        known = available(blueprints)
        message = (f"no flow runs product {envelope.product!r} scenario {envelope.scenario!r}; "
                   f"available: {', '.join(known)}")
        raise ValidationFailed(message, [
            {"field": "scenario", "message": message, "type": "no_blueprint", "product": envelope.product,
             "scenario": envelope.scenario, "available": known},
        ])

    return admit
