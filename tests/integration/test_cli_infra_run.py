"""`hub infra up|down|status` and `hub run`, exercised as an operator would: as commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub import topics
from hub.settings import Settings
from tests.conftest import free_port
from tests.integration.test_intake import ESOP_KEY, URL, order
from tests.support import envelopes, read_topic

HUB = [sys.executable, "-m", "hub"]


def hub_cmd(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HUB, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_infra_up_twice_status_down_twice(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HUB_HOME": str(tmp_path / "home"),
        "HUB_KAFKA_PORT": str(free_port()),
        "HUB_MONGO_PORT": str(free_port()),
        "HUB_SFTP_PORT": str(free_port()),
    }
    try:
        first = hub_cmd(["infra", "up"], env)
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("started") == 3
        second = hub_cmd(["infra", "up"], env)
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("already running") == 3
        status = hub_cmd(["infra", "status"], env)
        assert status.returncode == 0
        lines = status.stdout.strip().splitlines()
        assert [ln.split()[:2] for ln in lines] == [["kafka", "up"], ["mongo", "up"], ["sftp", "up"]]
        assert f"kafka://127.0.0.1:{env['HUB_KAFKA_PORT']}" in status.stdout
        for name in ("kafka", "mongo", "sftp"):
            assert (tmp_path / "home" / "run" / f"{name}.pid").exists()
            assert (tmp_path / "home" / "logs" / f"{name}.log").exists()
    finally:
        down = hub_cmd(["infra", "down"], env)
    assert down.returncode == 0
    assert hub_cmd(["infra", "down"], env).stdout.count("not running") == 3
    after = hub_cmd(["infra", "status"], env)
    assert after.returncode == 1
    assert all(ln.split()[1] == "down" for ln in after.stdout.strip().splitlines())


def test_external_urls_are_never_started(tmp_path: Path, infra_settings: Settings) -> None:
    env = {
        **os.environ,
        "HUB_HOME": str(tmp_path / "home"),
        "HUB_KAFKA_URL": infra_settings.kafka_bootstrap,
        "HUB_MONGO_URL": infra_settings.mongo_uri,
        "HUB_SFTP_ENABLED": "false",
    }
    up = hub_cmd(["infra", "up"], env)
    assert up.returncode == 0, up.stderr
    assert "kafka: external" in up.stdout and "mongo: external" in up.stdout
    assert not (tmp_path / "home" / "run" / "kafka.pid").exists()
    assert hub_cmd(["infra", "status"], env).returncode == 0  # external servers answer


def test_port_taken_by_a_stranger_is_reported(tmp_path: Path, infra_settings: Settings) -> None:
    env = {**os.environ, "HUB_HOME": str(tmp_path / "home"), "HUB_KAFKA_PORT": str(infra_settings.mongo_port),
           "HUB_SFTP_ENABLED": "false"}
    up = hub_cmd(["infra", "up"], env)
    assert up.returncode == 1
    assert f"port {infra_settings.mongo_port} is taken" in up.stderr


async def test_hub_run_serves_routes_and_stops_cleanly_on_sigterm(settings: Settings) -> None:
    port = free_port()
    env = {**os.environ, "HUB_HTTP_PORT": str(port), "HUB_TOPIC_PREFIX": settings.topic_prefix,
           "HUB_MONGO_DB": settings.mongo_db}
    proc = subprocess.Popen([*HUB, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            ready: dict[str, Any] = {}
            while time.monotonic() < deadline:
                try:
                    async with http.get(base + "/readyz") as r:
                        ready = await r.json()
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await _sleep(0.3)
            assert ready.get("status") == "ready", ready
            async with http.get(base + "/healthz") as r:
                assert r.status == 200
            async with http.post(base + URL, json=order("E-run"), headers=ESOP_KEY) as r:
                assert r.status == 202
                answer = await r.json()
        # the worker's router agent moved the envelope from the partner topic to the order topic
        records = await read_topic(settings, topics.orders(settings.topic_prefix), expect=1, wait=30)
        assert [e.id for e in envelopes(records)] == [answer["envelope_id"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("hub run did not stop within 30 s of SIGTERM")
    assert proc.returncode == 0, out[-3000:]
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)
