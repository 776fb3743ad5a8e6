"""Fixtures for the connector tests: a real RabbitMQ for the session (Debian rabbitmq-server, started
the way ``hub infra`` starts it, on free ports under the session's HUB_HOME)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from app.infra.process import wait_until
from app.infra.rabbitmq import RabbitServer
from connectors.amqp.settings import AmqpSettings
from hub.settings import Settings
from tests.conftest import free_port


@pytest.fixture(scope="session")
def rabbit_server(infra_settings: Settings) -> Iterator[RabbitServer]:
    port = free_port()
    saved = os.environ.get("HUB_AMQP_PORT")
    os.environ["HUB_AMQP_PORT"] = str(port)
    server = RabbitServer(infra_settings, AmqpSettings(port=port, dist_port=free_port()))
    server.prepare()
    server.process.start(server.argv(), env=server.env())
    try:
        assert wait_until(server.answers, 60, 0.3), server.process.tail()
        yield server
    finally:
        server.process.stop()
        if saved is None:
            os.environ.pop("HUB_AMQP_PORT", None)
        else:
            os.environ["HUB_AMQP_PORT"] = saved


@pytest.fixture(scope="session")
def rabbit(rabbit_server: RabbitServer) -> str:
    """AMQP URL of the session's RabbitMQ."""
    return rabbit_server.amqp.embedded_url
