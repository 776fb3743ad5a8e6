"""``hub routes check FILE --sample MSG``: what a sample message would become, without any server.

The route's source connector turns the sample into raw envelope(s) with its own ``sample(raw)``
(same parsing and safety checks as live traffic), then the route's transform and canonical
validation run exactly as they would in ``RouteEmit.prepare``. Nothing is sent anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.context import ConnectorContext
from connectors.registry import registry
from hub.envelope import Envelope
from hub.settings import Settings
from routes.manager import build
from routes.pipeline import RouteEmit


def dry_run(route: Any, raw: bytes, settings: Settings) -> list[Envelope]:
    """Raise ValidationFailed (with field errors) when the sample would be rejected."""
    ctx = ConnectorContext(settings, route.name, transform=route.transform)
    source = build(registry.get("source", route.source.connector).factory, route.source, ctx)
    sample = getattr(source, "sample", None)
    if sample is None:
        raise NotImplementedError(f"connector {route.source.connector!r} has no dry run")
    emit = RouteEmit(route, prefix=settings.topic_prefix, intake=None, producer=None,
                     sink=object() if getattr(route.target, "sink", None) else None)  # type: ignore[arg-type]
    return [emit.prepare(env) for env in sample(raw)]


def read_sample(value: str) -> bytes:
    """``--sample`` is a file path, or the message itself."""
    path = Path(value)
    try:
        if path.is_file():
            return path.read_bytes()
    except OSError:
        pass
    return value.encode()
