"""Shared fixtures. Integration tests get *real* servers: one private set per test session
(``hub infra up`` with its own HUB_HOME and free loopback ports), so parallel sessions and a
developer's running hub never collide. Each test gets its own topic prefix and database.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.infra.ephemeral import ephemeral_infra, free_port
from hub.settings import Settings
from tests import crashlog
from tests.loopcheck import LoopMonitor

__all__ = ["free_port"]

#: The tier of a test follows from its folder, so nobody can forget a marker (issue "House layout" §6).
#: ``unit`` needs no server (``pytest -m unit`` runs in under a minute); ``integration`` and
#: ``connectors`` run against the real servers this file starts for the session.
TIERS = {"unit": "unit", "integration": "integration", "connectors": "connectors"}

#: Fixtures that start the session's servers; a unit test may not request them, even indirectly.
SERVER_FIXTURES = frozenset({"infra_settings", "rabbit_server"})


def pytest_configure(config: pytest.Config) -> None:
    crashlog.configure(config)  # why a worker died, when one does (tests/crashlog.py)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    crashlog.test_started(nodeid)


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    crashlog.test_ended(nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    crashlog.report(terminalreporter)


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the name of its first folder under ``tests/`` (``None`` outside a tier)."""
    parts = path.resolve().relative_to(Path(__file__).resolve().parent).parts
    return TIERS.get(parts[0]) if len(parts) > 1 else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its folder's tier, and refuse a unit test that would start the servers:
    a marker alone would let ``-m unit`` start tansu, SecantusDB and sshd behind the developer's back."""
    wrong: list[str] = []
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if tier == "unit":
            used = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if used:
                wrong.append(f"{item.nodeid}: requests {', '.join(sorted(used))}")
    if wrong:
        raise pytest.UsageError("unit tests may not start the session servers (move them to tests/integration/):\n  "
                                + "\n  ".join(wrong))


@pytest.fixture(scope="session", autouse=True)
def _application_imported() -> None:
    """Import the application's modules before any test's loop runs. Why: a process imports them
    once, before it serves (``hub run`` builds the web app and the worker first); in a test
    session the first test to build a web app or start routes would otherwise pay ~0.5 s of
    imports (zeep, lxml, faust, asyncssh) inside one loop callback and be failed for it."""
    from app import plugins

    for _ in plugins.load((*plugins.ROUTE_MODULES, *plugins.AGENT_MODULES, "app.web", "routes.manager")):
        pass


@pytest.fixture(autouse=True)
def _loop_not_blocked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which the event loop ran one callback for more than 100 ms of CPU:
    blocking file, XML or YAML work belongs in a thread (issue "House layout" §5); a callback over
    1 s of wall time with little CPU is reported as a ``LoopStalled`` warning. A test that blocks on
    purpose says so: ``@pytest.mark.allow_blocking(reason="...")``."""
    marker = request.node.get_closest_marker("allow_blocking")
    if marker is not None and not marker.kwargs.get("reason"):
        pytest.fail("allow_blocking needs reason=\"why this test may block the loop\"", pytrace=False)
    monitor = LoopMonitor(threshold_s=0.1)
    with monitor.installed():
        yield
    if marker is not None or not monitor.slow:
        return
    # CPU burnt on the loop thread fails the test. A long wall time with little CPU is reported, not
    # failed: on a shared 2-core CI machine the loop thread also waits for the GIL held by the driver's
    # threads (motor, zeep's httpx) and for I/O the test itself does, and that flaked the suite.
    blocked = [s for s in monitor.slow if s.cpu_s > monitor.threshold_s]
    if blocked:
        pytest.fail("event loop blocked:\n  " + "\n  ".join(map(str, blocked[:10])), pytrace=False)
    warnings.warn(LoopStalled("event loop stalled (little CPU):\n  " + "\n  ".join(map(str, monitor.slow[:5]))),
                  stacklevel=1)


class LoopStalled(UserWarning):
    """A loop callback took > 1 s of wall time with under 100 ms of CPU (see ``_loop_not_blocked``)."""


@pytest.fixture(scope="session")
def infra_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Start tansu, SecantusDB and sshd for this test session; stop them at the end.
    The HUB_* variables stay exported meanwhile, so ``hub`` subprocesses use the same servers."""
    with ephemeral_infra(tmp_path_factory.mktemp("hubhome")) as settings:
        yield settings


@pytest.fixture
def settings(infra_settings: Settings) -> Iterator[Settings]:
    """Per-test isolation on the shared servers: own topic prefix, own database; the test's topics
    are deleted afterwards. Why: every Kafka client of every later test fetches the metadata of
    every topic in the cluster, on its event loop — after a few hundred tests' topics (≈ 40 each)
    that parsing alone crossed the loop check's 100 ms and failed unrelated tests at teardown."""
    tag = uuid.uuid4().hex[:10]
    mine = infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}"})
    yield mine
    _drop_topics(mine)


def _drop_topics(settings: Settings) -> None:
    """Best effort, in its own thread and loop (never the test's): a failure only leaves topics behind."""

    async def drop() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix + ".")]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(drop(), 15))
        except Exception:  # cleanup must never fail a test
            pass

    worker = threading.Thread(target=run, name="drop-test-topics", daemon=True)
    worker.start()
    worker.join(20)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[object]:
    from app.runtime import Runtime

    rt = Runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()
