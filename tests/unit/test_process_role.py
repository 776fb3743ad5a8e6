"""The process role and the shared listener (issue 18, docs/deploy.md "Processes"): ``HUB_ROLE`` /
``hub run --role`` and ``HUB_HTTP_REUSE_PORT`` / ``HUB_HTTP_PROBE_PORT`` validated by the settings
model, each bad value named by its variable; what each role's HTTP app serves (built, not started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.runtime import Runtime
from app.web import build_web_app
from hub.errors import ConfigError
from hub.settings import Settings, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HUB_CONFIG_DIR", str(tmp_path))  # no hub.yaml there
    return monkeypatch


def test_the_role_defaults_to_all_and_takes_each_role(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.role, settings.http_reuse_port, settings.http_probe_port) == ("all", False, None)
    for role in ("all", "intake", "worker"):
        clean_env.setenv("HUB_ROLE", role)
        assert load_settings().role == role
    assert load_settings(role="intake").role == "intake"  # hub run --role, over HUB_ROLE


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("HUB_ROLE", "engine", "Input should be 'all', 'intake' or 'worker'"),
    ("HUB_ROLE", "", "Input should be 'all', 'intake' or 'worker'"),
    ("HUB_HTTP_REUSE_PORT", "sometimes", "valid boolean"),
    ("HUB_HTTP_PROBE_PORT", "0", "greater than or equal to 1"),
])
def test_a_bad_value_is_refused_naming_its_variable(clean_env: pytest.MonkeyPatch, variable: str, value: str,
                                                    says: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    problems = err.value.problems or []
    assert any(p.startswith(f"environment {variable}={value!r}") and says in p for p in problems), problems


def test_the_probe_port_must_be_the_process_own(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HUB_HTTP_PORT", "8443")
    clean_env.setenv("HUB_HTTP_PROBE_PORT", "8443")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert any("HUB_HTTP_PROBE_PORT" in p for p in err.value.problems or []), err.value.problems
    clean_env.setenv("HUB_HTTP_PROBE_PORT", "9443")
    clean_env.setenv("HUB_HTTP_REUSE_PORT", "true")
    settings = load_settings()
    assert (settings.http_port, settings.http_probe_port, settings.http_reuse_port) == (8443, 9443, True)


def test_hub_run_refuses_an_unknown_role_before_starting_anything(clean_env: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["run", "--role", "engine"])
    assert result.exit_code == 2
    assert "--role" in result.output and "all, intake, worker" in result.output


def _paths(settings: Settings) -> set[str]:
    app = build_web_app(Runtime(settings, partners={}))
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_each_role_serves_its_endpoints(tmp_path: Path) -> None:
    probes = {"/healthz", "/readyz", "/admin/v1/readiness", "/metrics", "/openapi.json"}
    intake = {"/api/v1/partners/{partner}/orders", "/api/v1/partners/{partner}/callbacks",
              "/api/v1/orders/{order_id}/stages/{stage}/submit"}
    for role in ("all", "intake"):
        served = _paths(Settings(home=tmp_path, role=role))
        assert probes | intake <= served, (role, sorted(served))
        assert any(p.startswith("/admin/v1/") and p != "/admin/v1/readiness" for p in served)
        assert any(p.startswith("/console") for p in served)
    assert _paths(Settings(home=tmp_path, role="worker")) == probes
