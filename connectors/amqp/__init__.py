"""AMQP 0-9-1 (RabbitMQ, aio-pika): queue consumer (source) and confirmed publisher (sink) — ``amqp``."""

from connectors.amqp import sink as _sink  # noqa: F401
from connectors.amqp import source as _source  # noqa: F401
from connectors.amqp.config import AmqpConnection, AmqpSinkConfig, AmqpSourceConfig

__all__ = ["AmqpConnection", "AmqpSinkConfig", "AmqpSourceConfig"]
