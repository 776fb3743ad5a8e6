"""``hub infra up | down | status``: start, stop and report the embedded servers."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.infra.private import narrow_tree, private_dir
from app.infra.process import InfraError, port_open, wait_until
from app.infra.servers import EmbeddedServer, KafkaServer, MongoServer, SftpServer
from hub.settings import Settings

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
#: the setting that makes each server external (what production must be given instead)
EXTERNAL_SETTING = {"kafka": "HUB_KAFKA_URL", "mongo": "HUB_MONGO_URL", "sftp": "HUB_SFTP_ENABLED=false",
                    "amqp": "HUB_AMQP_URL"}


@dataclass(frozen=True)
class ServerStatus:
    name: str
    url: str
    managed: bool  # False: external server configured by URL
    pid: int | None
    answers: bool

    def line(self) -> str:
        state = "up" if self.answers else "down"
        who = f"pid {self.pid}" if self.pid else ("external" if not self.managed else "not running")
        return f"{self.name:<6} {state:<5} {self.url}  ({who})"


class Infra:
    """The set of embedded servers this configuration needs."""

    def __init__(self, settings: Settings, extra: list[EmbeddedServer] | None = None) -> None:
        self.settings = settings
        self.servers: list[EmbeddedServer] = [KafkaServer(settings), MongoServer(settings)]
        if settings.sftp_enabled:
            self.servers.append(SftpServer(settings))
        from app.infra import rabbitmq  # RabbitMQ only when AMQP routes exist or HUB_AMQP_ENABLED=true

        if rabbitmq.wanted(settings):
            self.servers.append(rabbitmq.RabbitServer(settings))
        self.servers.extend(extra or [])

    def get(self, name: str) -> EmbeddedServer:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def up(self, log: Callable[[str], None] = print) -> list[ServerStatus]:
        """Start what is not running; idempotent (a second ``up`` changes nothing).

        ``HUB_PROFILE=production`` starts nothing: a server that would be embedded is refused,
        naming the setting that points the hub at the real one (hub/profiles.py)."""
        if self.settings.profile == "production":
            embedded = [s for s in self.servers if not s.external]
            if embedded:
                raise InfraError("HUB_PROFILE=production does not start embedded servers; set "
                                 + ", ".join(f"{EXTERNAL_SETTING.get(s.name, s.name)} ({s.name})" for s in embedded))
        if any(not s.external for s in self.servers):  # HUB_HOME holds their data: the owner's only
            private_dir(self.settings.home)
            narrowed = narrow_tree(self.settings.home)
            if narrowed:
                log(f"{self.settings.home}: {narrowed} files and folders made private (0600/0700)")
        for server in self.servers:
            if server.external:
                log(f"{server.name}: external ({server.url}), not started")
                continue
            pid = server.process.pid()
            if pid and server.answers():
                log(f"{server.name}: already running (pid {pid}) at {server.url}")
                continue
            if pid:  # running but not answering: restart it
                server.process.stop()
            if port_open("127.0.0.1", server.port):
                raise InfraError(
                    f"{server.name}: port {server.port} is taken by a process the hub did not start; "
                    f"stop it or set HUB_{server.name.upper()}_PORT"
                )
            server.prepare()
            started = time.monotonic()
            pid = server.process.start(server.argv(), env=server.env())
            if not wait_until(functools.partial(_ready, server), READY_TIMEOUT, 0.2):
                tail = server.process.tail()
                server.process.stop()
                raise InfraError(f"{server.name} did not become ready in {READY_TIMEOUT:.0f}s; log:\n{tail}")
            log(f"{server.name}: started (pid {pid}) at {server.url} in {time.monotonic() - started:.1f}s")
        return self.status()

    def down(self, log: Callable[[str], None] = print) -> None:
        """Stop what ``up`` started; idempotent."""
        stop_servers([s for s in self.servers if not s.external], log=lambda s, ok: log(
            f"{s.name}: {'stopped' if ok else 'not running'}"))

    def status(self) -> list[ServerStatus]:
        return [
            ServerStatus(
                name=s.name,
                url=s.url,
                managed=not s.external,
                pid=None if s.external else s.process.pid(),
                answers=s.answers(),
            )
            for s in self.servers
        ]


def _ready(server: EmbeddedServer) -> bool:
    """Started (a pid) and answering on its port."""
    return server.process.pid() is not None and server.answers()


def stop_servers(servers: list[EmbeddedServer], timeout: float = STOP_TIMEOUT,
                 log: Callable[[EmbeddedServer, bool], None] = lambda s, ok: None) -> None:
    """Stop several servers at once: SIGTERM to all, then wait for all (SIGKILL after ``timeout``, or
    after a server's own shorter ``stop_grace_s``).

    Why at once: tansu alone takes ~3 s to honour SIGTERM; one after the other, the servers used
    up most of the 10 s an operator gives ``hub run`` to exit."""
    start = time.monotonic()
    signalled = [(server, server.process.terminate()) for server in reversed(servers)]
    quick = sorted(signalled, key=lambda sp: sp[0].stop_grace_s is None)  # those not waited for first
    for server, pid in quick:
        if pid is not None:
            grace = timeout if server.stop_grace_s is None else min(timeout, server.stop_grace_s)
            server.process.wait_stopped(pid, start + grace)
        log(server, pid is not None)
