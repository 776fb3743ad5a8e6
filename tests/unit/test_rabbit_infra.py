"""``hub infra`` starts RabbitMQ only when an enabled route uses AMQP (or HUB_AMQP_ENABLED=true)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.infra.rabbitmq import RabbitServer, amqp_routes_configured
from connectors.amqp.settings import AmqpSettings
from hub.settings import load_settings

ROUTE = "source:\n  connector: amqp\n  partner: mq\n  queue: q\n"


def test_detects_enabled_amqp_routes_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "routes").mkdir()
    assert not amqp_routes_configured(tmp_path)
    route = tmp_path / "routes" / "mq.yaml"
    route.write_text("enabled: ${MQ_ON:-false}\n" + ROUTE)
    assert not amqp_routes_configured(tmp_path)
    monkeypatch.setenv("MQ_ON", "true")
    assert amqp_routes_configured(tmp_path)
    route.write_text("source:\n  connector: sftp\n")
    assert not amqp_routes_configured(tmp_path)
    assert not amqp_routes_configured(Path(__file__).resolve().parents[2] / "config")  # shipped: off by default


def test_private_node_under_hub_home_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    server = RabbitServer(load_settings(), AmqpSettings(port=35999))
    env = server.env()
    assert env["RABBITMQ_NODENAME"] == "hub35999@localhost" and env["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert env["RABBITMQ_MNESIA_BASE"].startswith(str(tmp_path)) and env["HOME"].startswith(str(tmp_path))
    assert env["RABBITMQ_DIST_PORT"] == "45999"
    server.prepare()
    assert "listeners.tcp.1 = 127.0.0.1:35999" in (tmp_path / "rabbitmq" / "rabbitmq.conf").read_text()
