"""The intake router agent: ``{p}.in.{partner}`` → ``{p}.orders``.

Every partner's inbound topic carries canonical envelopes (whatever protocol they arrived by);
the router moves them onto the order-events topic keyed by order id. A record that is not an
envelope is dead-lettered with its raw bytes, never dropped.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from app.runtime import Runtime
from hub import topics, tracing
from hub.metrics import ENVELOPES_IN
from hub.records import parse_or_dead_letter

log = logging.getLogger(__name__)
RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


def register_agents(app: faust.App, runtime: Runtime) -> None:
    prefix = runtime.settings.topic_prefix
    inbound_names = [topics.inbound(prefix, name) for name in sorted(runtime.partners)]
    if not inbound_names:
        return
    orders_topic = app.topic(topics.orders(prefix), **RAW)
    inbound_topic = app.topic(*inbound_names, **RAW)

    @app.agent(inbound_topic, name="intake-router")
    async def intake_router(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            ENVELOPES_IN.labels(message.topic.rsplit(".", 1)[-1], message.topic).inc()  # {p}.in.{partner}
            envelope = await parse_or_dead_letter(message, runtime.db, runtime.producer, agent="intake-router")
            if envelope is None:
                continue
            with tracing.hop(envelope.trace, "hub.router", "route", envelope.correlation_id) as span:
                envelope.trace = span.trace  # the engine's span names the router's as its parent
                fut = await orders_topic.send(
                    key=envelope.kafka_key(), value=envelope.kafka_value(), headers=envelope.kafka_headers()
                )
                await fut  # acknowledged by the broker before the inbound offset may be committed
