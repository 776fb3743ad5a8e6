"""``hub routes check FILE --sample MSG``: what a sample message would become, without any server.

The route's source connector turns the sample into raw envelope(s) with its own ``sample(raw)`` —
part of the Source contract, and the same parse function its live handler runs — then the route's
transform and canonical validation run exactly as they would in ``RouteEmit.prepare``. Nothing is
sent anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from connectors.base import Outcome
from connectors.context import ConnectorContext
from connectors.registry import registry
from hub.envelope import Envelope
from hub.errors import PermanentError
from hub.settings import Settings
from routes.pipeline import RouteEmit


def dry_run(route: Any, raw: bytes, settings: Settings) -> list[Envelope]:
    """Raise ValidationFailed (with field errors) when the sample would be rejected."""
    source = registry.new_source(route.source.connector, route.source, ConnectorContext(settings, route.name,
                                                                                       transform=route.transform))
    emit = RouteEmit(route, prefix=settings.topic_prefix, intake=None, producer=None,
                     sink=_NoSink() if getattr(route.target, "sink", None) else None)
    return [emit.prepare(env) for env in source.sample(raw)]


class _NoSink:
    """Stands for the route's sink in a dry run: ``prepare`` only needs to know there is one."""

    name: ClassVar[str] = "dry-run"

    async def start(self) -> None:
        return None

    async def deliver(self, envelope: Envelope) -> Outcome:
        raise PermanentError("a dry run delivers nothing")

    async def stop(self) -> None:
        return None


def read_sample(value: str) -> bytes:
    """``--sample`` is a file path, or the message itself."""
    path = Path(value)
    try:
        if path.is_file():
            return path.read_bytes()
    except OSError:
        pass
    return value.encode()
