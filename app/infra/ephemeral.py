"""A private, throw-away set of embedded servers on free loopback ports.

Used by the test suite (one set per test session) and the benchmarks, so neither collides with a
developer's running hub nor with each other. The environment variables are exported for the
duration, so ``hub`` subprocesses started meanwhile talk to the same servers.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.infra.manager import Infra
from hub.settings import Settings, load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ephemeral_infra(home: Path | None = None, *, sftp: bool = True, **extra_env: str) -> Iterator[Settings]:
    """Start Kafka, MongoDB (and SFTP) in ``home`` on free ports; stop them and restore the env after."""
    home = home or Path(tempfile.mkdtemp(prefix="hub-"))
    env = {
        "HUB_HOME": str(home),
        "HUB_KAFKA_PORT": str(free_port()),
        "HUB_MONGO_PORT": str(free_port()),
        "HUB_SFTP_PORT": str(free_port()),
        "HUB_HTTP_PORT": str(free_port()),
        "HUB_SFTP_ENABLED": "true" if sftp else "false",
        **extra_env,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = load_settings()
        infra = Infra(settings)
        infra.up(log=lambda m: None)
        try:
            yield settings
        finally:
            infra.down(log=lambda m: None)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
