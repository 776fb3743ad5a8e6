"""Issue 8 items 7 and 8, the pure parts: the Kafka-client log rate limit and the database circuit
(integration: tests/integration/test_broker_restart.py, tests/integration/test_mongo_down.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymongo.errors import ServerSelectionTimeoutError

from hub.db import DatabaseUnavailable, DbHealth, is_connection_failure
from hub.errors import BrokerUnavailable, RetryableError
from hub.kafka import RateLimitFilter


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeated_client_errors_pass_once_per_window_with_a_count() -> None:
    flt = RateLimitFilter(window_s=60)
    shown = [flt.filter(record("aiokafka.client", "Unable connect to node with id %s: %s", 111, f"try {i}"))
             for i in range(48)]
    assert shown.count(True) == 1  # 48 retries of one error: one line
    assert flt.filter(record("aiokafka.consumer.group_coordinator", "OffsetCommit failed %s", "x"))  # another one
    assert flt.filter(record("hub.intake", "same text every time"))  # the hub's own loggers pass untouched
    assert flt.filter(record("hub.intake", "same text every time"))
    assert flt.filter(record("aiokafka.client", "info %s", 1, level=logging.INFO))

    flt.window_s = 0  # window over: the next one is shown and says how many were held back
    again = record("aiokafka.client", "Unable connect to node with id %s: %s", 111, "later")
    assert flt.filter(again)
    assert "47 more like this" in again.getMessage()


class FakeAdmin:
    def __init__(self) -> None:
        self.fail = True
        self.pings = 0

    async def command(self, name: str) -> dict[str, Any]:
        self.pings += 1
        if self.fail:
            raise ServerSelectionTimeoutError("127.0.0.1:1: [Errno 111] Connection refused, Timeout: 1.0s, Topology …")
        return {"ok": 1}


class FakeClient:
    def __init__(self) -> None:
        self.admin = FakeAdmin()


async def test_database_circuit_opens_fails_fast_and_closes_after_a_ping() -> None:
    client = FakeClient()
    health = DbHealth(client, probe_interval_s=0.01)  # type: ignore[arg-type]
    health.check()  # closed: nothing raised

    cause = ServerSelectionTimeoutError("no server")
    wrapped = RetryableError("MongoDB unavailable")
    wrapped.__cause__ = cause
    assert health.observe(wrapped)  # the driver error behind the hub's own opens it
    try:
        health.check()
        raise AssertionError("an open circuit must fail fast")
    except DatabaseUnavailable as exc:
        assert isinstance(exc, RetryableError)  # → 503 + Retry-After at every source
    assert health.describe()["circuit"] == "open"

    client.admin.fail = False
    for _ in range(200):
        if health.up:
            break
        await asyncio.sleep(0.01)
    assert health.up and health.describe() == {"circuit": "closed"}
    health.check()
    await health.close()


def test_only_unreachable_database_errors_count() -> None:
    assert is_connection_failure(ServerSelectionTimeoutError("x"))
    assert not is_connection_failure(ValueError("bad query"))
    assert not is_connection_failure(BrokerUnavailable("kafka"))
