"""What a connector gets besides its own config: the process's shared services.

Every registered factory is called ``factory(config, context)`` — one signature for all protocols,
so the route runner never special-cases a connector. ``shared(key)`` hands out process-wide tables
(e.g. the HTTP endpoint tables that ``/api/v1/partners/{partner}/orders`` and ``/soap/{partner}``
dispatch through), created on first use.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from hub.kafka import EnvelopeProducer
    from hub.settings import Settings
    from transforms.mapping import Transform


@dataclass
class ConnectorContext:
    """Process services for one connector instance (one route)."""

    settings: Settings
    route: str = ""
    db: AsyncIOMotorDatabase | None = None
    producer: EnvelopeProducer | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    transform: Transform | None = None  # the route's; for a source that maps before it validates (REST)
    on_error: Any = None  # async callable(envelope_or_none, reason): publish an error envelope

    def shared(self, key: str) -> dict[str, Any]:
        return self.tables.setdefault(key, {})

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"hub.route.{self.route or 'adhoc'}")


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a connector's background task and wait for it; its own errors are already logged."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
