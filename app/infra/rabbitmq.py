"""Embedded RabbitMQ (Debian ``rabbitmq-server``) for AMQP routes and their tests.

Everything lives under ``HUB_HOME/rabbitmq`` (mnesia, logs, config, Erlang cookie via ``HOME``) and
the node name carries the port, so test sessions and a developer's hub never share a node. EPMD is
bound to loopback (``ERL_EPMD_ADDRESS``); AMQP listens on ``127.0.0.1:HUB_AMQP_PORT`` only.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from app.infra.process import InfraError
from app.infra.servers import EmbeddedServer
from connectors.amqp.settings import AmqpSettings
from hub.configfile import read_yaml
from hub.errors import ConfigError
from hub.settings import Settings

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class RabbitServer(EmbeddedServer):
    name = "amqp"
    marker = "rabbit"

    def __init__(self, settings: Settings, amqp: AmqpSettings | None = None) -> None:
        self.amqp = amqp or AmqpSettings()
        super().__init__(settings)

    @property
    def external(self) -> bool:
        return self.amqp.url is not None

    @property
    def port(self) -> int:
        return self.amqp.port

    @property
    def dist_port(self) -> int:
        if self.amqp.dist_port:
            return self.amqp.dist_port
        return self.port + 10000 if self.port + 10000 < 65536 else self.port - 10000

    @property
    def url(self) -> str:
        return self.amqp.embedded_url if not self.external else "amqp://(external)"

    @property
    def folder(self) -> Path:
        return self.settings.home / "rabbitmq"

    def prepare(self) -> None:
        if not Path(SERVER).exists() and shutil.which("rabbitmq-server") is None:
            raise InfraError("RabbitMQ not installed: apt-get install -y rabbitmq-server")
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
            "log.console = true\nlog.file = false\n"
        )

    def env(self) -> dict[str, str]:
        f = self.folder
        return {
            "HOME": str(f),  # the Erlang cookie
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": f"hub{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(f / "mnesia"),
            "RABBITMQ_LOG_BASE": str(f / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(f / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(f / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(f / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def argv(self) -> list[str]:
        return [SERVER if Path(SERVER).exists() else str(shutil.which("rabbitmq-server"))]

    def answers(self) -> bool:
        """AMQP-level check: the broker answers the protocol header with Connection.Start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.settimeout(2)
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                frame = sock.recv(7)
                return len(frame) == 7 and frame[0] == 1  # METHOD frame (connection.start)
        except OSError:
            return False


def amqp_routes_configured(config_dir: Path) -> bool:
    """True when a route file uses the ``amqp`` connector (source or sink) — then ``hub infra`` starts RabbitMQ."""
    folder = config_dir / "routes"
    if not folder.is_dir():
        return False
    for path in folder.glob("*.yaml"):
        try:
            data, _ = read_yaml(path)  # ${VAR:-default} expanded, as the route loader does
        except ConfigError:
            continue
        if not isinstance(data, dict):
            continue
        source = data.get("source") or {}
        sink = (data.get("target") or {}).get("sink") or {}
        enabled = str(data.get("enabled", True)).lower() not in ("false", "0", "no", "off")
        if "amqp" in (source.get("connector"), sink.get("connector")) and enabled:
            return True
    return False


def wanted(settings: Settings) -> bool:
    amqp = AmqpSettings()
    return amqp.url is None and (amqp.enabled or amqp_routes_configured(settings.config_dir))
