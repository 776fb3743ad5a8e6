"""A route whose source cannot start is tried again on the manager's polls, backing off
(``ROUTE_RELAUNCH``): after 1, 2, 4 … polls, not on every one. No server: the AMQP port is closed."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hub.settings import load_settings
from routes.manager import RouteManager


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_route_that_cannot_start_is_retried_with_backoff(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "mq-in.yaml").write_text(
        "source:\n  connector: amqp\n  partner: mq\n  queue: q\n"
        f"  connection: {{url: 'amqp://guest:guest@127.0.0.1:{_closed_port()}/'}}\n")

    async def ensure_topic(name: str) -> None:
        return None

    runtime: Any = SimpleNamespace(settings=load_settings(config_dir=tmp_path), partners={}, intake=None, db=None,
                                   producer=None, connector_tables={}, ensure_topic=ensure_topic)
    manager = RouteManager(runtime, poll_interval=0.2)
    await manager.start(watch=False)
    try:
        (runner,) = manager.runners.values()
        assert runner.state == "failed" and runner.launch_failures == 1
        await manager.reload()  # the next poll comes too early: not tried again yet
        assert runner.launch_failures == 1
        await asyncio.sleep(0.25)  # one poll later: due
        await manager.reload()
        assert runner.launch_failures == 2
        await asyncio.sleep(0.25)  # now it waits two polls
        await manager.reload()
        assert runner.launch_failures == 2
        await asyncio.sleep(0.2)
        await manager.reload()
        assert runner.launch_failures == 3 and runner.state == "failed"
    finally:
        await manager.stop()
