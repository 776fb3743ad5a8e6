"""Outbound delivery: one agent per partner, its policy (``policy.py``) and the agent (``agent.py``).

This package's ``__init__`` stays import-light: ``hub.partners`` imports the policy models, and
the Faust agent code is only imported when a worker registers agents.
"""

from __future__ import annotations

from typing import Any


def register_agents(app: Any, runtime: Any) -> None:
    """Plugin hook (hub/plugins.py AGENT_MODULES): one delivery agent per partner with ``outbound``."""
    from hub.delivery.agent import register_agents as _register

    _register(app, runtime)
