"""Shared fixtures. Integration tests get *real* servers: one private set per test session
(``hub infra up`` with its own HUB_HOME and free loopback ports), so parallel sessions and a
developer's running hub never collide. Each test gets its own topic prefix and database.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.settings import Settings, load_settings

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def infra_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Start tansu, SecantusDB and sshd for this test session; stop them at the end."""
    from hub.infra import Infra

    home = tmp_path_factory.mktemp("hubhome")
    env = {
        "HUB_HOME": str(home),
        "HUB_KAFKA_PORT": str(free_port()),
        "HUB_MONGO_PORT": str(free_port()),
        "HUB_SFTP_PORT": str(free_port()),
        "HUB_HTTP_PORT": str(free_port()),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # subprocesses (hub run, hub CLI) inherit the same servers
    settings = load_settings()
    infra = Infra(settings)
    infra.up(log=lambda m: None)
    try:
        yield settings
    finally:
        infra.down(log=lambda m: None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def settings(infra_settings: Settings) -> Settings:
    """Per-test isolation on the shared servers: own topic prefix, own database."""
    tag = uuid.uuid4().hex[:10]
    return infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}"})


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[object]:
    from hub.runtime import Runtime

    rt = Runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()
