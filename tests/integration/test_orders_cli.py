"""The operator CLI (``hub dlq|orders|calls``) in-process through typer's CliRunner, against the real
servers; settings come from the environment like a real ``hub`` invocation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.runtime import Runtime
from hub import topics
from hub.deadletter import DeadLetter
from hub.settings import Settings
from tests.integration.test_admin_api import SECRETS, seed_order
from tests.integration.test_dlq import seed
from tests.support import envelopes, read_topic

pytestmark = pytest.mark.integration
T = TypeVar("T")


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {"HUB_TOPIC_PREFIX": settings.topic_prefix, "HUB_MONGO_DB": settings.mongo_db, "COLUMNS": "250"}


@pytest.fixture
def with_runtime(settings: Settings) -> Iterator[Callable[[Callable[[Runtime], Awaitable[T]]], T]]:
    """Run seeding code with a started Runtime (the CLI itself runs its own event loop)."""

    def call(fn: Callable[[Runtime], Awaitable[T]]) -> T:
        async def main() -> T:
            rt = Runtime(settings)
            await rt.start()
            try:
                return await fn(rt)
            finally:
                await rt.stop()

        return asyncio.run(main())

    yield call


def hub(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def test_dlq_list_show_replay_discard_history(env: dict[str, str], settings: Settings, with_runtime: Any) -> None:
    async def setup(rt: Runtime) -> list[DeadLetter]:
        return [await seed(rt, "ord-1"), await seed(rt, "ord-2"), await seed(rt, "ord-3", partner="group")]

    a, b, c = with_runtime(setup)
    listed = json.loads(hub(env, "dlq", "list", "--partner", "esop", "--json"))
    assert listed["total"] == 2 and {i["id"] for i in listed["items"]} == {a.id, b.id}
    table = hub(env, "dlq", "list")
    assert a.id in table and c.id in table and "3 of 3 dead letters" in table
    shown = hub(env, "dlq", "show", a.id)
    assert "notifyOrderResult" in shown and "RetryableError" in shown and not any(s in shown for s in SECRETS)
    hub(env, "dlq", "show", "nope", code=1)

    hub(env, "dlq", "replay", code=2)  # neither ids, nor a filter, nor --all
    dry = hub(env, "dlq", "replay", "--partner", "esop", "--dry-run")
    assert "dry-run 2" in dry
    out = hub(env, "dlq", "replay", "--partner", "esop", "--rate", "20", "--yes", "--as", "ops:li",
              "--patch", '[{"op": "add", "path": "/note", "value": "replayed after ESOP outage"}]')
    assert "ok 2" in out
    replayed = envelopes(asyncio.run(read_topic(settings, a.source_topic, expect=2, wait=8)))
    assert sorted(e.correlation_id for e in replayed) == ["ord-1", "ord-2"]
    assert {e.payload["note"] for e in replayed} == {"replayed after ESOP outage"}

    hub(env, "dlq", "discard", c.id, code=2)  # --reason is required
    assert "discard ok" in hub(env, "dlq", "discard", c.id, "--reason", "cancelled", "--as", "ops:li")
    hub(env, "dlq", "replay", c.id, code=1)  # discarded: refused, exit 1
    history = json.loads(hub(env, "dlq", "history", "--who", "ops:li", "--json"))
    assert sorted((h["action"], h["result"]) for h in history) == [("discard", "ok"), ("replay", "ok"),
                                                                   ("replay", "ok")]


def test_orders_list_show_retry_and_calls(env: dict[str, str], settings: Settings, with_runtime: Any) -> None:
    async def setup(rt: Runtime) -> DeadLetter:
        letter = await seed(rt, "ord-x")
        await seed_order(rt, "ord-x", letter=letter, overdue=True)
        await seed_order(rt, "ord-y")
        return letter

    letter = with_runtime(setup)
    overdue = json.loads(hub(env, "orders", "list", "--overdue", "--json"))
    assert [o["id"] for o in overdue] == ["ord-x"]
    assert {o["id"] for o in json.loads(hub(env, "orders", "list", "--stage", "close", "--json"))} == {"ord-x", "ord-y"}
    assert json.loads(hub(env, "orders", "list", "--product", "5g_lan", "--json")) == []
    shown = hub(env, "orders", "show", "ord-x")
    assert "design_request" in shown and "dead_lettered" in shown and "current wait" in shown
    assert not any(s in shown for s in SECRETS)
    detail = json.loads(hub(env, "orders", "show", "ord-x", "--json"))
    assert detail["overdue"] is True and len(detail["stages"]) == 2
    hub(env, "orders", "show", "nope", code=1)

    stats = json.loads(hub(env, "calls", "stats", "--since", "1h", "--json"))
    assert {(s["operation"], s["failed"]) for s in stats} == {("design_request", 0), ("notifyOrderResult", 2)}
    assert "notifyOrderResult" in hub(env, "calls", "stats")
    failed = json.loads(hub(env, "calls", "failed", "--partner", "esop", "--json"))
    assert {c["call_id"] for c in failed} == {"ord-x-c2", "ord-y-c2"}

    assert "ok 1" in hub(env, "orders", "retry", "ord-x")
    (env_out,) = envelopes(asyncio.run(read_topic(settings, letter.source_topic, expect=1, wait=8)))
    assert env_out.correlation_id == "ord-x" and env_out.headers["replay-of"] == letter.id
    hub(env, "orders", "retry", "ord-x", code=1)  # nothing left to retry
    hub(env, "calls", "recall", "ord-y-c2", code=1)  # its call has no dead letter behind it


def test_calls_recall_batch_goes_through_dead_letter_replay(env: dict[str, str], settings: Settings,
                                                            with_runtime: Any) -> None:
    async def setup(rt: Runtime) -> list[DeadLetter]:
        letters = []
        for i in range(3):
            letter = await seed(rt, f"ord-b{i}")
            await seed_order(rt, f"ord-b{i}", letter=letter)
            letters.append(letter)
        return letters

    letters = with_runtime(setup)
    hub(env, "calls", "recall", code=2)
    assert "dry-run 3" in hub(env, "calls", "recall", "--partner", "esop", "--since", "1h", "--dry-run")
    hub(env, "calls", "recall", "--partner", "esop", "--since", "1h", code=2)  # a batch needs --yes when scripted
    assert "ok 3" in hub(env, "calls", "recall", "--partner", "esop", "--since", "1h", "--yes")
    out = envelopes(asyncio.run(read_topic(settings, topics.outbound(settings.topic_prefix, "esop"), expect=3)))
    assert sorted(e.headers["replay-of"] for e in out) == sorted(x.id for x in letters)
