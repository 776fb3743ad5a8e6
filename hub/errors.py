"""One exception tree for the hub, mapped at the boundary.

::

    HubError
    ├── ConfigError                 bad YAML / settings; names file, line and key
    ├── ValidationFailed            bad input from a partner (→ 400 / SOAP Fault / rejected file)
    ├── AuthError                   missing or wrong credentials (→ 401)
    └── DeliveryError               talking to a broker, a database or a partner failed
        ├── RetryableError          worth trying again (timeouts, 5xx, connection refused, broker down)
        │   └── BrokerUnavailable   Kafka did not acknowledge the write
        └── PermanentError          retrying will not help (4xx, business rejection, bad schema)

Connectors translate library exceptions (aiokafka, aiohttp, zeep, asyncssh, aio-pika) into these
so that retry policies, dead-lettering and HTTP answers never look at a library's own types.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """Configuration is invalid. ``problems`` lists ``file:line: key: message`` strings."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        detail = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{message}\n{detail}" if detail else message)


class ValidationFailed(HubError):
    """Input from a partner failed validation; ``errors`` are ``{"field", "message"}`` items."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class AuthError(HubError):
    """The caller did not prove who it is."""


class DeliveryError(HubError):
    """Moving a message to a broker, database or partner failed."""

    retryable: bool = False


class RetryableError(DeliveryError):
    retryable = True


class PermanentError(DeliveryError):
    retryable = False


class BrokerUnavailable(RetryableError):
    """Kafka did not acknowledge a write (acks=all) in time."""
