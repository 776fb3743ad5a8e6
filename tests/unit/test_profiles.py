"""Profiles and secrets (issue "House layout" §4): ``HUB_PROFILE=production`` refuses the embedded
servers and every ``dev-`` default secret, naming the setting; secrets can come from ``*_FILE``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.infra import Infra
from app.infra.process import InfraError, port_open
from hub.configfile import read_yaml
from hub.errors import ConfigError
from hub.partners import load_partners
from hub.profiles import check_profile, dev_secret_problems, production_problems
from hub.settings import load_settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
HUB = Path(sys.executable).parent / "hub"
EXTERNAL = {"HUB_KAFKA_URL": "kafka1:9092", "HUB_MONGO_URL": "mongodb://db1:27017/", "HUB_SFTP_ENABLED": "false"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean HUB_* environment (a test session exports its servers' variables) on a copy of the config."""
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)
    shutil.copytree(CONFIG, tmp_path / "config")
    monkeypatch.setenv("HUB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    return monkeypatch


def test_embedded_profile_is_the_default_and_allows_dev_secrets(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.profile == "embedded"
    check_profile(settings)  # no refusal: the README's run command works as shipped
    assert production_problems(settings)  # ...though production would refuse this configuration


def test_production_refuses_a_dev_default_secret_naming_the_variable(env: pytest.MonkeyPatch) -> None:
    for name, value in EXTERNAL.items():
        env.setenv(name, value)
    env.setenv("HUB_PROFILE", "production")
    with pytest.raises(ConfigError) as exc:
        check_profile(load_settings())
    problems = exc.value.problems
    esop = [p for p in problems if "HUB_ESOP_API_KEY" in p]
    assert esop and all(p.split(":")[0].endswith(".yaml") for p in esop)  # file:line: key: message
    assert any(p.startswith(f"{os.environ['HUB_CONFIG_DIR']}/partners/esop.yaml:10: inbound.rest.auth.keys[0]: "
                            "HUB_ESOP_API_KEY is not set") for p in problems), problems
    assert any("HUB_ADMIN_OPERATOR_TOKEN" in p for p in problems)
    assert any("HUB_ESOP_SOAP_PASSWORD" in p for p in problems)  # routes too
    assert not any(p.startswith("HUB_KAFKA_URL") for p in problems)  # external servers were given


def test_production_refuses_a_variable_set_to_a_dev_value_and_dev_literals(env: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    env.setenv("HUB_ESOP_API_KEY", "dev-esop-key-0001")
    problems = dev_secret_problems(tmp_path / "config" / "partners" / "esop.yaml")
    assert len(problems) == 1 and "HUB_ESOP_API_KEY is a dev- value" in problems[0]
    literal = tmp_path / "literal.yaml"
    literal.write_text("name: dev-viewer\nauth:\n  token: dev-token-0001\n", encoding="utf-8")
    (problem,) = dev_secret_problems(literal)  # a name starting with dev- is not a secret
    assert problem.startswith(f"{literal}:3: auth.token: a dev- secret")


def test_production_passes_once_every_secret_and_server_is_given(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in EXTERNAL.items():
        env.setenv(name, value)
    env.setenv("HUB_PROFILE", "production")
    env.setenv("HUB_HTTP_TLS_REQUIRED", "false")  # TLS at a proxy in front (HTTPS itself: tests/unit/test_tls.py)
    secrets = {p.split(": ")[2].split()[0] for p in production_problems(load_settings())}
    assert "HUB_GROUP_OUT_KEY" in secrets
    for name in secrets:
        env.setenv(name, f"prod-{name.lower()}-0123456789")
    check_profile(load_settings())


def test_production_with_an_unset_kafka_url_refuses_instead_of_starting_tansu(env: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    port = free_port()
    env.setenv("HUB_PROFILE", "production")
    env.setenv("HUB_KAFKA_PORT", str(port))
    env.setenv("HUB_MONGO_URL", EXTERNAL["HUB_MONGO_URL"])
    env.setenv("HUB_SFTP_ENABLED", "false")
    with pytest.raises(InfraError, match=r"HUB_KAFKA_URL \(kafka\)"):
        Infra(load_settings()).up(log=lambda m: None)  # `hub infra up` refuses as well
    done = subprocess.run([str(HUB), "run"], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2, done.stderr
    assert "HUB_KAFKA_URL: not set" in done.stderr and "HUB_MONGO_URL" not in done.stderr.split("refuses")[1]
    assert not port_open("127.0.0.1", port)
    assert not (tmp_path / "home" / "run").exists() or not list((tmp_path / "home" / "run").glob("kafka*"))


def test_secrets_from_files(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "esop-key"
    key.write_text("file-esop-key-0123\n", encoding="utf-8")  # one trailing newline is not part of it
    env.setenv("HUB_ESOP_API_KEY_FILE", str(key))
    partners = load_partners(tmp_path / "config")
    auth = partners["esop"].inbound.rest.auth  # type: ignore[union-attr]
    assert auth.check("file-esop-key-0123") and not auth.check("dev-esop-key-0001")

    tokens = tmp_path / "tokens"
    tokens.write_text("ops:operator:file-operator-token-0123", encoding="utf-8")
    env.setenv("HUB_ADMIN_TOKENS_FILE", str(tokens))
    mongo = tmp_path / "mongo-url"
    mongo.write_text("mongodb://hub:s3cret@db1:27017/\n", encoding="utf-8")
    env.setenv("HUB_MONGO_URL_FILE", str(mongo))
    settings = load_settings()
    assert [(t.name, t.token.get_secret_value()) for t in settings.admin_tokens] == [
        ("ops", "file-operator-token-0123")]
    assert settings.mongo_url == "mongodb://hub:s3cret@db1:27017/" and not settings.mongo_embedded


def test_secret_file_errors_name_the_variable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("HUB_ESOP_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as exc:
        read_yaml(tmp_path / "config" / "partners" / "esop.yaml")
    assert f"HUB_ESOP_API_KEY_FILE={tmp_path / 'missing'}: No such file" in str(exc.value)
    env.setenv("HUB_ESOP_API_KEY", "prod-esop-key-0123")
    (tmp_path / "missing").write_text("other", encoding="utf-8")
    with pytest.raises(ConfigError, match="set HUB_ESOP_API_KEY or HUB_ESOP_API_KEY_FILE, not both"):
        read_yaml(tmp_path / "config" / "partners" / "esop.yaml")
    env.setenv("HUB_MONGO_URL", "mongodb://a/")
    env.setenv("HUB_MONGO_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="HUB_MONGO_URL or HUB_MONGO_URL_FILE, not both"):
        load_settings()
