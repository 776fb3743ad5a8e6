"""TLS and SASL to the hub's own Kafka (issue 18, docs/deploy.md "Kafka: TLS and SASL").

The settings are validated with messages naming the variables; :func:`hub.kafka.client_options`
(and :func:`hub.kafka.faust_credentials` for faust) turn them into client options; and every Kafka
client the hub constructs goes through them — the source scan below fails on a new client that does
not. The real handshake against a broker is tests/integration/test_kafka_tls.py; SASL has no
integration test (tansu's memory storage cannot hold a SCRAM user: docs/deploy.md).
"""

from __future__ import annotations

import ast
import logging
import os
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest

from connectors.kafka.config import KafkaConnection
from hub.errors import ConfigError
from hub.kafka import client_options, faust_config, faust_credentials, producer_config
from hub.profiles import kafka_tls_problems
from hub.settings import PROJECT_ROOT, Settings, load_settings
from tests.tlscerts import Pki

#: the packages of the hub's runtime (tests and bench/ make their own clients)
PACKAGES = ("hub", "flows", "app", "connectors", "routes", "transforms")
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient", "App"}
#: the functions whose ``**`` carries the hub's connection (client_kwargs: a route's, see the test below)
OPTIONS = {"client_options", "producer_config", "faust_config", "client_kwargs"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("HUB_KAFKA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HUB_CONFIG_DIR", str(tmp_path / "config"))  # no hub.yaml
    return monkeypatch


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def _problems(env: pytest.MonkeyPatch, values: dict[str, str]) -> str:
    for key, value in values.items():
        env.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    return "\n".join(err.value.problems or [])


@pytest.mark.parametrize(("values", "expected"), [
    ({"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     ["HUB_KAFKA_SASL_MECHANISM", "HUB_KAFKA_SASL_USERNAME", "HUB_KAFKA_SASL_PASSWORD_FILE"]),
    ({"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "HUB_KAFKA_SASL_MECHANISM": "PLAIN",
      "HUB_KAFKA_SASL_USERNAME": "hub"}, ["needs HUB_KAFKA_SASL_PASSWORD (or HUB_KAFKA_SASL_PASSWORD_FILE)"]),
    ({"HUB_KAFKA_SASL_USERNAME": "hub"}, ["HUB_KAFKA_SASL_USERNAME set but HUB_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"]),
    ({"HUB_KAFKA_SECURITY_PROTOCOL": "SSL", "HUB_KAFKA_SASL_MECHANISM": "PLAIN"}, ["has no SASL"]),
    ({"HUB_KAFKA_SSL_CHECK_HOSTNAME": "false"},
     ["HUB_KAFKA_SSL_CHECK_HOSTNAME set but HUB_KAFKA_SECURITY_PROTOCOL=PLAINTEXT has no TLS"]),
    ({"HUB_KAFKA_SECURITY_PROTOCOL": "SSL", "HUB_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     ["HUB_KAFKA_SSL_CAFILE", "no such file: /nonexistent/ca.pem"]),
    ({"HUB_KAFKA_SECURITY_PROTOCOL": "KERBEROS"}, ["HUB_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"]),
    ({"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HUB_KAFKA_SASL_MECHANISM": "GSSAPI"}, ["HUB_KAFKA_SASL_MECHANISM"]),
])
def test_invalid_security_settings_are_refused_naming_the_variables(
        env: pytest.MonkeyPatch, values: dict[str, str], expected: list[str]) -> None:
    text = _problems(env, values)
    for part in expected:
        assert part in text, text


def test_ssl_files_with_plaintext_and_a_key_without_its_certificate_are_refused(
        env: pytest.MonkeyPatch, pki: Pki) -> None:
    client = pki.client("hub")
    assert "HUB_KAFKA_SSL_CAFILE set but HUB_KAFKA_SECURITY_PROTOCOL=PLAINTEXT has no TLS" in _problems(
        env, {"HUB_KAFKA_SSL_CAFILE": str(pki.ca_file)})
    assert "HUB_KAFKA_SSL_KEYFILE needs HUB_KAFKA_SSL_CERTFILE" in _problems(
        env, {"HUB_KAFKA_SECURITY_PROTOCOL": "SSL", "HUB_KAFKA_SSL_KEYFILE": str(client.key)})


def test_plaintext_is_the_default_and_gives_bootstrap_servers_only() -> None:
    s = Settings(kafka_url="k1:9092,k2:9092")
    assert client_options(s) == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None and "broker_credentials" not in faust_config(s)


def test_ssl_with_a_ca_and_a_client_certificate(pki: Pki) -> None:
    client = pki.client("hub")
    s = Settings(kafka_url="k1:9093", kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca_file,
                 kafka_ssl_certfile=client.cert, kafka_ssl_keyfile=client.key)
    options = client_options(s)
    context = options.pop("ssl_context")
    assert options == {"bootstrap_servers": "k1:9093", "security_protocol": "SSL"}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # only the CA file, not the system's store
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials) and creds.context.verify_mode == ssl.CERT_REQUIRED
    assert producer_config(s)["security_protocol"] == "SSL" and "ssl_context" in producer_config(s)


def test_ssl_without_a_ca_file_trusts_the_system_store_and_hostname_checking_can_be_turned_off() -> None:
    s = Settings(kafka_url="k1:9093", kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    context = client_options(s)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname  # still verified against a CA
    assert kafka_tls_problems(s) and "HUB_KAFKA_SSL_CHECK_HOSTNAME=false" in kafka_tls_problems(s)[0]
    assert kafka_tls_problems(Settings(kafka_url="k1:9093", kafka_security_protocol="SSL")) == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_options_for_aiokafka_and_faust(pki: Pki, mechanism: str) -> None:
    s = Settings(kafka_url="k1:9094", kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mechanism,
                 kafka_sasl_username="hub", kafka_sasl_password="pw-0123456789", kafka_ssl_cafile=pki.ca_file)
    options = client_options(s)
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options == {"bootstrap_servers": "k1:9094", "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                       "sasl_plain_username": "hub", "sasl_plain_password": "pw-0123456789"}
    creds = faust_config(s)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value, creds.username, creds.password) == (
        "SASL_SSL", mechanism, "hub", "pw-0123456789")
    assert creds.ssl_context is not None
    assert "pw-0123456789" not in repr(creds) and "pw-0123456789" not in repr(s) and "pw-0123456789" not in str(s)


def test_sasl_plaintext_has_no_tls_context() -> None:
    s = Settings(kafka_url="k1:9092", kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="hub", kafka_sasl_password="pw-0123456789")
    assert "ssl_context" not in client_options(s) and client_options(s)["security_protocol"] == "SASL_PLAINTEXT"
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_PLAINTEXT"


def test_the_password_comes_from_its_file_and_is_never_shown(env: pytest.MonkeyPatch, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("file-secret-4711\n")
    env.setenv("HUB_KAFKA_URL", "k1:9094")
    env.setenv("HUB_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("HUB_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    env.setenv("HUB_KAFKA_SASL_USERNAME", "hub")
    env.setenv("HUB_KAFKA_SASL_PASSWORD_FILE", str(secret))
    with caplog.at_level(logging.DEBUG):
        s = load_settings()
        assert client_options(s)["sasl_plain_password"] == "file-secret-4711"
    assert "file-secret-4711" not in repr(s) and "file-secret-4711" not in caplog.text
    env.delenv("HUB_KAFKA_SASL_PASSWORD_FILE")  # a refused combination: the error names, never shows, it
    text = _problems(env, {"HUB_KAFKA_SASL_PASSWORD": "env-secret-4711", "HUB_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert "HUB_KAFKA_SASL_PASSWORD" in text and "env-secret-4711" not in text


def test_a_route_on_the_hub_cluster_uses_the_hubs_security_a_partner_cluster_its_own(pki: Pki) -> None:
    s = Settings(kafka_url="k1:9093", kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca_file)
    hub_side = KafkaConnection().client_kwargs(s)
    assert hub_side["bootstrap_servers"] == "k1:9093" and hub_side["security_protocol"] == "SSL"
    assert isinstance(hub_side["ssl_context"], ssl.SSLContext) and hub_side["request_timeout_ms"] == 10_000
    partner = KafkaConnection(bootstrap_servers="p1:9092").client_kwargs(s)
    assert partner["security_protocol"] == "PLAINTEXT" and "ssl_context" not in partner
    with pytest.raises(ValueError, match="security_protocol, ssl_cafile without bootstrap_servers"):
        KafkaConnection(security_protocol="SSL", ssl_cafile="/etc/ca.pem")


def _client_calls() -> list[tuple[str, ast.Call]]:
    found = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                    if name == "App" and not (isinstance(func, ast.Attribute) and getattr(func.value, "id", "")
                                              == "faust"):
                        continue  # only faust.App is a Kafka client
                    if name in CLIENTS:
                        found.append((f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", node))
    return found


def _through_options(call: ast.Call) -> bool:
    spread = [k.value for k in call.keywords if k.arg is None]
    named = {k.arg for k in call.keywords if k.arg is not None}
    def option_call(value: Any) -> bool:
        func = value.func if isinstance(value, ast.Call) else None
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return name in OPTIONS
    overridden = named & {"bootstrap_servers", "security_protocol", "ssl_context", "sasl_mechanism",
                          "sasl_plain_username", "sasl_plain_password", "broker", "broker_credentials"}
    return any(option_call(v) for v in spread) and not overridden


def test_every_kafka_client_the_hub_creates_takes_its_connection_from_client_options() -> None:
    calls = _client_calls()
    assert len(calls) >= 10, [where for where, _ in calls]  # the scan sees them (producer, consumers, admins, faust)
    wrong = [where for where, call in calls if not _through_options(call)]
    assert not wrong, (f"Kafka clients not built from hub.kafka.client_options (or producer_config / faust_config; "
                       f"a route's KafkaConnection.client_kwargs): {wrong}")


@pytest.mark.parametrize("source", ['AIOKafkaConsumer("t", bootstrap_servers=s.kafka_bootstrap)',
                                    'AIOKafkaProducer(**client_options(s), bootstrap_servers="k:9092")',
                                    'faust.App("id", broker="kafka://k:9092")'])
def test_the_scan_refuses_a_client_with_its_own_connection(source: str) -> None:
    call = ast.parse(source).body[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    assert not _through_options(call.value)
