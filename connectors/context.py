"""What a connector gets besides its own config: the process's shared services.

Every registered factory is called ``factory(config, context)`` — one signature for all protocols,
so the route runner and the delivery agents never special-case a connector. ``shared(key)`` hands
out process-wide tables (e.g. the HTTP endpoint tables that ``/api/v1/partners/{partner}/orders`` and
``/soap/{partner}`` dispatch through), created on first use. ``timeout_s`` / ``concurrency`` are what a
sink's client allows per attempt and in flight (a partner's ``outbound.policy``; defaults for route
sinks). ``supervise(name, run)`` is how a source runs its background work (``connectors/supervision.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors.supervision import DEFAULT_POLICY, RestartPolicy, Supervised
from hub.stopping import cancel_until_done

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
    timeout_s: float = 10.0
    concurrency: int = 16
    restart: RestartPolicy = DEFAULT_POLICY
    on_health: Callable[[Supervised], None] | None = None  # the route manager: state on /readyz, hub_route_up
    supervised: list[Supervised] = field(default_factory=list)

    def shared(self, key: str) -> dict[str, Any]:
        return self.tables.setdefault(key, {})

    def supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> Supervised:
        """Start ``run`` as a supervised background task (restarted with backoff when it dies)."""
        task = Supervised(f"{name}-{self.route or 'adhoc'}", run, policy=self.restart, on_change=self.on_health)
        self.supervised.append(task)
        return task.start()

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"hub.route.{self.route or 'adhoc'}")


async def cancel_task(task: asyncio.Task[Any] | Supervised | None) -> None:
    """Cancel a connector's background task and wait for it; its own errors are already logged."""
    if task is None:
        return
    if isinstance(task, Supervised):
        await task.stop()
        return
    await cancel_until_done(task)
