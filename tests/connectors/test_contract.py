"""The connector contract without servers: the registry (one factory signature, frozen once the
runtime starts), the supervisor every source task runs under, and what sources may call on emit."""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from app.runtime import Runtime
from connectors.base import Emit
from connectors.context import ConnectorContext
from connectors.registry import Registry, RegistryError, registry
from connectors.supervision import FAILED, RESTARTING, RUNNING, STOPPED, RestartPolicy, Supervised
from hub.settings import Settings
from tests.support import eventually

CONNECTORS = ["rest", "soap", "sftp", "amqp", "kafka"]
ROOT = Path(__file__).resolve().parents[2]
FAST = RestartPolicy(initial_s=0.05, multiplier=2.0, max_s=0.2, jitter_s=0.0, fail_after=3, stable_s=0.5)


class Cfg(BaseModel):
    pass


class GoodSource:
    name: ClassVar[str] = "good"

    def __init__(self, config: Cfg, context: ConnectorContext) -> None:
        self.config, self.context = config, context


class KeywordSink:  # the old sink signature: options as keywords, no context
    name: ClassVar[str] = "kw"

    def __init__(self, config: Cfg, *, timeout_s: float = 10.0, concurrency: int = 16) -> None:
        self.config = config


class RequiredKeywordSink:
    name: ClassVar[str] = "kw2"

    def __init__(self, config: Cfg, context: ConnectorContext, *, config_dir: Path) -> None:
        self.config = config


def test_a_factory_with_another_signature_is_refused_at_registration() -> None:
    reg = Registry()
    reg.source("good", Cfg)(GoodSource)
    with pytest.raises(RegistryError, match=r"factory must be factory\(config, context\)"):
        reg.sink("kw", Cfg)(KeywordSink)
    with pytest.raises(RegistryError, match=r"factory must be factory\(config, context\)"):
        reg.sink("kw2", Cfg)(RequiredKeywordSink)
    with pytest.raises(RegistryError, match="registered twice"):
        reg.source("good", Cfg)(KeywordSink)


def test_a_frozen_registry_refuses_registrations() -> None:
    reg = Registry()
    reg.source("good", Cfg)(GoodSource)
    reg.freeze()
    assert reg.frozen
    with pytest.raises(RegistryError, match="frozen"):
        reg.sink("late", Cfg)(GoodSource)


async def test_the_runtime_freezes_the_connector_registry_when_it_starts(settings: Settings) -> None:
    runtime = Runtime(settings, partners={})
    await runtime.start()
    try:
        assert registry.frozen
        assert set(CONNECTORS) <= set(registry.names("source")) and set(CONNECTORS) <= set(registry.names("sink"))
        with pytest.raises(RegistryError, match="frozen"):
            registry.source("late", Cfg)(GoodSource)
        assert "late" not in registry.names("source")
    finally:
        await runtime.stop()


@pytest.mark.parametrize("name", CONNECTORS)
@pytest.mark.parametrize("kind", ["source", "sink"])
def test_every_builtin_factory_is_factory_config_context(kind: str, name: str) -> None:
    factory = registry.get(kind, name).factory
    params = list(inspect.signature(factory).parameters.values())
    assert [p.kind for p in params] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2, (name, params)
    hints = inspect.get_annotations(factory.__init__)
    assert hints[params[1].name] == "ConnectorContext", hints


def _emit_members() -> set[str]:
    return {n for n in vars(Emit) if not n.startswith("_")} | {"__call__"}


@pytest.mark.parametrize("name", CONNECTORS)
def test_sources_call_only_what_emit_declares_and_never_probe_it(name: str) -> None:
    """Every attribute a source reads off its emit is declared by the Emit protocol, and no
    connector module looks anything up with getattr on it (the contract is the protocol)."""
    declared = _emit_members()
    assert {"prepare", "publish_batch", "reject", "can_reject"} <= declared
    for path in sorted((ROOT / "connectors" / name).glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
                holder = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
                if holder in ("emit", "_emit"):
                    assert node.attr in declared, f"{path}:{node.lineno}: emit.{node.attr} is not in Emit"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr",
                                                                                                   "hasattr"):
                target = ast.unparse(node.args[0]) if node.args else ""
                assert "emit" not in target and "source" not in target and "sink" not in target, \
                    f"{path}:{node.lineno}: {ast.unparse(node)} probes the contract"


def test_the_route_emit_implements_the_protocol() -> None:
    from routes.pipeline import RouteEmit

    missing = [m for m in _emit_members() if not callable(getattr(RouteEmit, m, None))
               and not isinstance(getattr(RouteEmit, m, None), property)]
    assert missing == []


# --- supervision ---------------------------------------------------------------------------------
class Flaky:
    """A work loop that raises ``fail`` times, then runs until cancelled."""

    def __init__(self, fail: int) -> None:
        self.fail, self.runs = fail, 0
        self.running = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.fail:
            raise RuntimeError(f"boom {self.runs}")
        self.running.set()
        await asyncio.Event().wait()


async def test_a_task_that_dies_is_restarted_and_reports_restarting_meanwhile() -> None:
    seen: list[str] = []
    work = Flaky(fail=1)
    task = Supervised("t", work, policy=FAST, on_change=lambda s: seen.append(s.state)).start()
    try:
        await asyncio.wait_for(work.running.wait(), 2)
        assert work.runs == 2 and task.restarts == 1
        assert seen[:2] == [RESTARTING, RUNNING], seen
        assert task.state == RUNNING and task.error is None
    finally:
        await task.stop()
    assert task.state == STOPPED and not task.alive


async def test_a_task_that_keeps_dying_is_failed_until_a_run_lasts() -> None:
    seen: list[tuple[str, str | None]] = []
    work = Flaky(fail=4)
    task = Supervised("t", work, policy=FAST, on_change=lambda s: seen.append((s.state, s.error))).start()
    try:
        await asyncio.wait_for(work.running.wait(), 3)
        assert (task.state, task.failures) == (FAILED, 4)  # still failed: the 5th run has not lasted yet
        assert (FAILED, "RuntimeError: boom 3") in seen
        await eventually(lambda: asyncio.sleep(0, task.state == RUNNING), timeout=2, interval=0.05)
        assert task.failures == 0
    finally:
        await task.stop()


async def test_a_killed_task_is_restarted_but_stop_is_final() -> None:
    work = Flaky(fail=0)
    task = Supervised("t", work, policy=FAST).start()
    await asyncio.wait_for(work.running.wait(), 1)
    work.running.clear()
    assert task.current is not None
    task.current.cancel()  # killed from outside: not a stop
    await asyncio.wait_for(work.running.wait(), 2)
    assert work.runs == 2 and task.restarts == 1
    await task.stop()
    await asyncio.sleep(0.3)
    assert work.runs == 2 and not task.alive


async def test_stop_ends_a_loop_that_lost_the_first_cancellation() -> None:
    """Python 3.11's ``asyncio.wait_for`` drops a cancel that lands as its inner call completes
    (gh-86296): the work loop then goes on as if nothing happened. ``stop`` must still end it (it
    waited forever: a test worker stuck 300 s in ``test_stop_leaves_nothing_running…[sftp]``)."""
    lost = asyncio.Event()
    running = asyncio.Event()

    async def loop_that_swallows_one_cancel() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            lost.set()  # as wait_for does when its inner call finished at the same moment
        await asyncio.Event().wait()  # ...and goes on with its work until cancelled again

    task = Supervised("t", loop_that_swallows_one_cancel, policy=FAST).start()
    await asyncio.wait_for(running.wait(), 1)
    stopping = asyncio.ensure_future(task.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)  # not wait_for: its own cancel would end the stop
    assert done, "stop() still waiting 5 s later"
    assert lost.is_set() and task.state == STOPPED and not task.alive


async def test_a_loop_that_returns_is_restarted_too(settings: Settings) -> None:
    runs: list[int] = []
    ready = asyncio.Event()

    async def once() -> None:
        runs.append(1)
        if len(runs) > 1:
            ready.set()
            await asyncio.Event().wait()

    ctx = ConnectorContext(settings, "r", restart=FAST)
    task: Any = ctx.supervise("once", once)
    try:
        await asyncio.wait_for(ready.wait(), 2)
        assert ctx.supervised == [task] and task.name == "once-r" and task.restarts == 1
    finally:
        await task.stop()


async def test_build_sink_builds_every_protocol_the_same_way(settings: Settings) -> None:
    """A partner's outbound sink is built ``factory(config, context)`` like a route's: a Kafka
    partner sink (which build_sink used to call with timeout_s/concurrency/config_dir keywords it
    does not take) gets the policy's limits in its context and delivers to the real broker."""
    from app.delivery import build_sink
    from connectors.kafka.sink import KafkaSink
    from hub.envelope import Envelope
    from hub.kafka import ensure_topics
    from hub.partners import Partner

    topic = f"partner.contract.{settings.topic_prefix}"
    await ensure_topics(settings, [topic], 1)
    partner = Partner.model_validate({"name": "mq", "outbound": {
        "protocol": "kafka", "policy": {"timeout_s": 3, "concurrency": 2},
        "config": {"partner": "mq", "topic": topic, "connection": {"bootstrap_servers": settings.kafka_bootstrap}}}})
    sink = build_sink(partner, ConnectorContext(settings, "deliver-mq"))
    assert isinstance(sink, KafkaSink) and (sink.ctx.timeout_s, sink.ctx.concurrency) == (3, 2)
    await sink.start()
    try:
        outcome = await sink.deliver(Envelope(type="call.request", source="hub", protocol="kafka",
                                              correlation_id="ord-1", idempotency_key="call:ord-1:x",
                                              payload={"operation": "x"}))
        assert outcome.ok and outcome.status == "acked", outcome
    finally:
        await sink.stop()
