"""Faust app wiring: the agents that move envelopes between the hub's topics.

Where things go (see hub/topics.py):

    connector ──emit──▶ {p}.in.{partner} ──[intake-router]──▶ {p}.orders ──[flow engine]──▶ {p}.out.{partner}
                                                                   ▲                              │
                                                                   └──── call results ◀──[delivery]┘

Agents come from the modules listed in ``app.plugins.AGENT_MODULES``; each exposes
``register_agents(app, runtime)``. The ``Runtime`` (Kafka producer, MongoDB) is shared with the
HTTP server in the same process.
"""

from __future__ import annotations

import faust

from app import plugins
from app.runtime import Runtime
from hub.kafka import faust_config, shorten_faust_fetch_wait


def create_app(runtime: Runtime) -> faust.App:
    """Build the Faust app for this configuration (topics depend on the declared partners)."""
    shorten_faust_fetch_wait()  # tansu: see hub/kafka.py
    app = faust.App(runtime.settings.group_id, **faust_config(runtime.settings))
    for module in plugins.load(plugins.AGENT_MODULES):
        module.register_agents(app, runtime)
    return app
