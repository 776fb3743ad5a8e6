"""Async hygiene (issue "House layout" §5): the loop monitor every test runs under, and the route
reloader's file and YAML work kept off the event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from app.runtime import Runtime
from hub.settings import load_settings
from routes.manager import RouteManager
from tests.loopcheck import LoopMonitor

ROOT = Path(__file__).resolve().parents[2]
ROUTE = """name: {name}
enabled: false
source:
  connector: rest
  partner: esop
  auth: {{header: X-Api-Key, keys: ["unit-test-key-{n:04d}"]}}
target:
  topic: inbound
"""


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.allow_blocking(reason="burns 150 ms CPU in one callback on purpose: the monitor must see it")
async def test_monitor_flags_a_cpu_burning_callback_and_passes_normal_ones() -> None:
    monitor = LoopMonitor(threshold_s=0.1)
    loop = asyncio.get_running_loop()
    with monitor.installed():
        for _ in range(20):
            await asyncio.sleep(0.01)  # ordinary callbacks: nothing to report
        assert monitor.slow == []
        done = asyncio.Event()
        loop.call_soon(lambda: (_burn(0.15), done.set()))
        await done.wait()
    (slow,) = monitor.slow
    assert slow.cpu_s >= 0.15 and "<lambda>" in slow.what and "test_loop_hygiene.py" in slow.what  # names it


@pytest.mark.allow_blocking(reason="sleeps in a blocking call on purpose: the monitor must see it")
async def test_monitor_flags_a_sleeping_blocking_call_by_wall_time_only_past_the_limit() -> None:
    monitor = LoopMonitor(threshold_s=0.1, wall_limit_s=0.3)
    with monitor.installed():
        time.sleep(0.15)  # on purpose: under the wall limit and no CPU, so not flagged
        await asyncio.sleep(0)
        assert monitor.slow == []
        time.sleep(0.35)  # on purpose: past the wall limit
        await asyncio.sleep(0)
    (slow,) = monitor.slow
    assert slow.wall_s >= 0.35 and slow.cpu_s < 0.1 and "test_monitor_flags_a_sleeping" in slow.what


@pytest.fixture
def routes_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config, ignore=shutil.ignore_patterns("routes"))
    (config / "routes").mkdir()
    monkeypatch.setenv("HUB_CONFIG_DIR", str(config))
    return config / "routes"


async def test_reload_reads_and_parses_route_files_off_the_loop(routes_config: Path) -> None:
    """300 route files (hundreds of ms of YAML and pydantic work) are loaded without one loop
    callback taking 100 ms: the scan runs in a worker thread."""
    def write() -> None:
        for n in range(300):
            (routes_config / f"r{n:03d}.yaml").write_text(ROUTE.format(name=f"r{n:03d}", n=n), encoding="utf-8")

    await asyncio.to_thread(write)  # the test's own setup stays off the loop too
    manager = RouteManager(Runtime(load_settings()))
    await asyncio.sleep(0)
    monitor = LoopMonitor(threshold_s=0.1)
    with monitor.installed():
        started = time.thread_time()
        changes = await manager.reload()
        loop_cpu = time.thread_time() - started
    assert len(changes) == 300 and {r.state for r in manager.runners.values()} == {"disabled"}
    assert monitor.slow == [], monitor.slow
    assert loop_cpu < 0.5, f"{loop_cpu:.2f} s CPU on the loop thread for 300 files"


async def test_reload_stats_first_and_rereads_only_changed_files(routes_config: Path) -> None:
    path = routes_config / "one.yaml"
    path.write_text(ROUTE.format(name="one", n=1), encoding="utf-8")
    past = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(past, past))  # older than the racy window: its stat can be trusted
    manager = RouteManager(Runtime(load_settings()))
    assert await manager.reload() == ["added one"]
    digest = manager.runners[str(path)].file.digest
    # same size, same inode, same mtime: the stat says "unchanged", so the content is not read again
    with path.open("r+", encoding="utf-8") as f:
        f.write(ROUTE.format(name="two", n=1)[:len("name: two")])
    os.utime(path, ns=(past, past))
    assert await manager.reload() == [] and manager.runners[str(path)].file.digest == digest
    os.utime(path, None)  # a real edit moves the mtime: read, hashed, parsed, applied
    assert await manager.reload() == ["reloaded two"]
    assert manager.runners[str(path)].file.digest != digest


class _FaustConsumer:
    """The attributes of faust's consumer the wipe guard touches (a stand-in for faust, not for the hub)."""

    def __init__(self) -> None:
        self._unacked_messages: list[object] = []
        self._acked: dict[object, object] = {}
        self._acked_index: dict[object, object] = {}
        self._read_offset: dict[object, object] = {}
        self._committed_offset: dict[object, object] = {}
        self._gap: dict[object, object] = {}
        self._n_acked = 0
        self.sought: list[tuple[str, int]] = []

    async def _commit(self, offsets: object) -> bool:
        return True

    async def perform_seek(self) -> None:
        return None

    def assignment(self) -> list[str]:
        return ["hub.orders-0"]

    async def seek(self, tp: str, offset: int) -> None:
        self.sought.append((tp, offset))


class _FaustApp:
    def __init__(self) -> None:
        self.consumer = _FaustConsumer()


async def test_wipe_guard_owns_its_fallback_and_cancels_it_when_the_watch_stops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The post-wipe fallback was a bare ``ensure_future`` in a timer: no reference, not cancelled at stop."""
    from hub.kafka import BrokerWatch, EnvelopeProducer, FaustWipeGuard

    settings = load_settings()
    watch = BrokerWatch(settings, EnvelopeProducer(settings), dict)
    monkeypatch.setattr(FaustWipeGuard, "FALLBACK_S", 0.05)
    app = _FaustApp()
    guard = FaustWipeGuard(app)
    guard.attach(watch)
    guard.on_wipe()
    await asyncio.sleep(0.2)  # the fallback ran as a task the guard holds, and reset the consumer
    assert app.consumer.sought == [("hub.orders-0", 0)] and guard._task is not None and guard._task.done()

    guard.on_wipe()  # a second wipe: its fallback is pending when the runtime stops
    assert guard._timer is not None
    monkeypatch.setattr(watch, "check", lambda: asyncio.sleep(0))
    running = asyncio.get_running_loop().create_task(watch.run())
    await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert guard._timer is None and guard._task is None  # closed with the watch
    await asyncio.sleep(0.1)
    assert app.consumer.sought == [("hub.orders-0", 0)]  # the cancelled fallback never ran
