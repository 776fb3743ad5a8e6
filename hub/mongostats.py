"""Counts of this process's MongoDB commands, documents and round-trip time, per collection.

Why: SecantusDB's ``serverStatus`` opcounters count *commands*, so a batched ``bulk_write`` of 80
order replaces is one "update" — they cannot say how many documents an order costs the database,
which is what its CPU goes by (index maintenance and BSON of each document). pymongo's command
monitoring sees every command with its statements; ``bench.flow`` reads the three counters from
``/metrics`` (``hub_mongo_commands_total``, ``hub_mongo_command_documents_total``,
``hub_mongo_command_seconds_total``). Cost: one dict insert and pop per command (a few µs).
"""

from __future__ import annotations

import threading
from typing import Any

from pymongo import monitoring

from hub.metrics import MONGO_COMMANDS, MONGO_DOCUMENTS, MONGO_SECONDS

__all__ = ["CommandStats"]

#: the field of a command that holds its statements (one per document written or removed)
_STATEMENTS = {"insert": "documents", "update": "updates", "delete": "deletes"}
#: commands nobody needs counted (handshakes, heartbeats, sessions)
_IGNORED = frozenset({"hello", "ismaster", "isMaster", "ping", "endSessions", "saslStart", "saslContinue",
                      "buildinfo", "buildInfo"})


class CommandStats(monitoring.CommandListener):
    """A pymongo command listener feeding the ``hub_mongo_*`` counters (thread-safe: motor runs
    pymongo in a thread pool)."""

    def __init__(self) -> None:
        self._started: dict[tuple[int, Any], tuple[str, str]] = {}
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in _IGNORED:
            return
        value = event.command.get(name)
        collection = value if isinstance(value, str) else str(event.command.get("collection", "-"))
        field = _STATEMENTS.get(name)
        if field is not None:
            MONGO_DOCUMENTS.labels(collection, name).inc(len(event.command.get(field) or ()))
        with self._lock:
            self._started[(event.request_id, event.connection_id)] = (collection, name)

    def _finished(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent) -> None:
        with self._lock:
            key = self._started.pop((event.request_id, event.connection_id), None)
        if key is None:
            return
        MONGO_COMMANDS.labels(*key).inc()
        MONGO_SECONDS.labels(*key).inc(event.duration_micros / 1e6)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._finished(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._finished(event)
