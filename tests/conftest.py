"""Shared fixtures. Integration tests get *real* servers: one private set per test session
(``hub infra up`` with its own HUB_HOME and free loopback ports), so parallel sessions and a
developer's running hub never collide. Each test gets its own topic prefix and database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.infra.ephemeral import ephemeral_infra, free_port
from hub.settings import Settings

__all__ = ["SHARED", "free_port"]

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


@pytest.fixture(scope="session")
def infra_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Start tansu, SecantusDB and sshd for this test session; stop them at the end.
    The HUB_* variables stay exported meanwhile, so ``hub`` subprocesses use the same servers."""
    with ephemeral_infra(tmp_path_factory.mktemp("hubhome")) as settings:
        yield settings


@pytest.fixture
def settings(infra_settings: Settings) -> Settings:
    """Per-test isolation on the shared servers: own topic prefix, own database."""
    tag = uuid.uuid4().hex[:10]
    return infra_settings.model_copy(update={"topic_prefix": f"t{tag}", "mongo_db": f"t_{tag}"})


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[object]:
    from app.runtime import Runtime

    rt = Runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()
