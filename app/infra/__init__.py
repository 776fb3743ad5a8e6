"""Embedded real servers for the default run and the tests (``hub infra up|down|status``).

Each server is a real process on loopback with a pid file, a log and a readiness check under
``HUB_HOME`` (default ``.hub/``). A server whose external URL is configured is never started.
"""

from app.infra.manager import Infra, ServerStatus

__all__ = ["Infra", "ServerStatus"]
