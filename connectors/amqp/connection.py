"""A robust aio-pika connection per connector (reconnects and re-consumes on its own)."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from connectors.amqp.config import AmqpConnection
from connectors.amqp.settings import AmqpSettings
from hub.errors import RetryableError


class AmqpUnavailable(RetryableError):
    """The broker could not be reached or closed the channel."""


def broker_url(conn: AmqpConnection) -> str:
    return conn.url.get_secret_value() if conn.url else AmqpSettings().broker_url()


async def connect(conn: AmqpConnection, name: str) -> AbstractRobustConnection:
    url = broker_url(conn)
    try:
        return await aio_pika.connect_robust(url, heartbeat=conn.heartbeat_s, client_properties={
            "connection_name": name})
    except Exception as exc:
        raise AmqpUnavailable(f"AMQP broker {url.split('@')[-1]} unreachable: {exc}") from exc
