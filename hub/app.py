"""Faust app wiring: the agents that move envelopes between the hub's topics.

Where things go (see hub/topics.py):

    connector ──emit──▶ {p}.in.{partner} ──[intake_router]──▶ {p}.orders ──▶ flow engine (flows/)

The ``Runtime`` (Kafka producer, MongoDB) is shared with the HTTP server in the same process.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from hub import topics
from hub.deadletter import DeadLetter, DeadLetters
from hub.envelope import Envelope
from hub.errors import ValidationFailed
from hub.kafka import faust_config
from hub.runtime import Runtime

log = logging.getLogger(__name__)


def create_app(runtime: Runtime) -> faust.App:
    """Build the Faust app for this configuration (topics depend on the declared partners)."""
    settings = runtime.settings
    prefix = settings.topic_prefix
    app = faust.App("hub", **faust_config(settings))
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    inbound_names = [topics.inbound(prefix, name) for name in sorted(runtime.partners)]
    orders_topic = app.topic(topics.orders(prefix), **raw)

    if inbound_names:
        inbound_topic = app.topic(*inbound_names, **raw)

        @app.agent(inbound_topic, name="intake-router")
        async def intake_router(stream: faust.StreamT) -> None:
            """Move canonical envelopes from every partner's inbound topic onto the order-events topic."""
            async for event in stream.events():
                message = event.message
                try:
                    envelope = Envelope.from_kafka(message.value, list(message.headers or []))
                except ValidationFailed as exc:
                    assert runtime.db is not None
                    await DeadLetters(runtime.db, runtime.producer).publish(
                        DeadLetter.for_raw(
                            message.topic, message.value, exc,
                            origin={"partition": message.partition, "offset": message.offset, "agent": "intake-router"},
                        )
                    )
                    continue
                fut = await orders_topic.send(
                    key=envelope.kafka_key(), value=envelope.kafka_value(), headers=envelope.kafka_headers()
                )
                await fut  # acknowledged by the broker before the inbound offset may be committed

    return app
