"""A partner operation called from a job (or the report sweep): the partner's own REST sink.

Why the sink and not a bare HTTP client: the partner file already says how to reach and judge
the partner — base URL, API key, TLS, per-field crypto, the operation's path and success rule
(connectors/rest/sink.py). A job names an operation; when the partner file does not declare it
(the seeds name the function, not its interface), the job's own ``path`` and ``success`` are used.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Outcome
from connectors.context import ConnectorContext
from connectors.rest.sink import RestOperation, RestSink, RestSinkConfig
from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.partners import Partner
from hub.retry import SuccessRule
from hub.settings import Settings


class PartnerCalls:
    """One REST sink per partner, made on first use; ``close()`` at the end of the run."""

    def __init__(self, settings: Settings, partners: dict[str, Partner]) -> None:
        self.settings, self.partners = settings, partners
        self._sinks: dict[str, RestSink] = {}

    def sink(self, partner: str, operation: str, path: str | None = None,
             success: SuccessRule | None = None) -> RestSink:
        sink = self._sinks.get(partner)
        if sink is None:
            found = self.partners.get(partner)
            if found is None or found.outbound is None or found.outbound.protocol != "rest":
                raise ConfigError(f"partner {partner!r} has no REST outbound")
            cfg = RestSinkConfig.model_validate(found.outbound.config)
            pol = found.outbound.policy
            sink = RestSink(cfg, ConnectorContext(self.settings, route=f"jobs:{partner}", timeout_s=pol.timeout_s,
                                                  concurrency=pol.concurrency))
            self._sinks[partner] = sink
        if operation not in sink.config.operations:
            if path is None:
                raise ConfigError(f"partner {partner!r} has no operation {operation!r} and the job gives no path")
            sink.config.operations[operation] = RestOperation(path=path, success=success or SuccessRule())
        return sink

    async def call(self, partner: str, operation: str, body: dict[str, Any], *, key: str, order_id: str = "-",
                   path: str | None = None, success: SuccessRule | None = None) -> Outcome:
        """One attempt; ``key`` is the Idempotency-Key the partner dedupes on (a retry sends the same)."""
        env = Envelope(type="job.call", source="hub", protocol="rest", correlation_id=order_id, idempotency_key=key,
                       payload={"operation": operation, "request": body})
        return await self.sink(partner, operation, path, success).deliver(env)

    async def close(self) -> None:
        for sink in self._sinks.values():
            await sink.stop()
        self._sinks.clear()
