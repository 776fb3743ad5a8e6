"""The flow-engine agent on ``{p}.orders`` and the sweeps that keep orders moving.

Every event of every order goes to the v2 runner (flows/runtime/runner.py): load the order document,
apply the event with the pure engine, write state + outbox + timers in one revision-checked write,
then carry the outbox out. Events are processed concurrently across orders and in order per order
(``hub/workpool.py``: per-key chaining, manual acks — Faust commits only up to the first unfinished
offset, so the offset of an event is committed only after its document write). The sweeps
(flows/runtime/sweeps.py) fire durable timers, resend outboxes a crash left, and resend everything
open after the broker lost its topics.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, cast

import faust

from flows.runtime.agents import FLOW_RUNNER_V2, build_runner, register_sweeps
from flows.settings import FlowSettings
from hub import topics
from hub.kafka import FaustWipeGuard
from hub.metrics import ENVELOPES_IN
from hub.records import parse_or_dead_letter
from hub.services import Services
from hub.workpool import KeyedPool

log = logging.getLogger(__name__)
RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
FLOW_RUNNER = FLOW_RUNNER_V2


def register_agents(app: faust.App, runtime: Services) -> None:
    """Plugin hook: the engine agent and the sweeps. A bad blueprint raises here (ConfigError
    naming file:line), so the worker never starts with it."""
    fs = FlowSettings()
    s = runtime.settings
    # where partners call back: the hub's public address (a load balancer in front of every worker),
    # never one worker's own listener — a callback must reach the hub even when that worker is gone
    runner = build_runner(runtime, fs, fs.callback_base_url or s.public_base_url)
    register_sweeps(app, runner)
    # faust's leader-election topic (one partition): a wiped broker gets it back with ours (hub/kafka.py);
    # faust's consumer (every agent's) must start the re-created topics at offset 0 (FaustWipeGuard)
    runtime.extra_topics[f"{app.conf.id}-__assignor-__leader"] = 1
    FaustWipeGuard(app).attach(runtime.broker)
    orders_topic = app.topic(topics.orders(runtime.settings.topic_prefix), **RAW)

    @app.agent(orders_topic, name="flow-engine")
    async def flow_engine(stream: faust.StreamT[Any]) -> None:
        pool = KeyedPool(fs.engine_concurrency, "flow-engine")
        manual = cast("faust.Stream[Any]", stream).noack()  # StreamT (the protocol) does not declare noack
        async for event in manual.events():
            message = event.message
            ENVELOPES_IN.labels("hub", message.topic).inc()
            env = await parse_or_dead_letter(message, runtime.db, runtime.producer, agent="flow-engine")
            if env is None:
                await manual.ack(event)
                continue
            await pool.submit(env.correlation_id, functools.partial(runner.handle, env),
                              functools.partial(manual.ack, event))
