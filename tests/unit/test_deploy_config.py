"""The production example files (config/deploy/, docs/deploy.md) are loaded and checked by the hub's
own code, so they cannot drift from it: the env example through the settings model and the
production profile, the topic plan and the index table regenerated from the code and compared.

A failure names the regeneration command (``python -m app.deployplan``) or the variable at fault.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app import deployplan
from app.infra import Infra
from hub.errors import ConfigError
from hub.profiles import production_problems
from hub.settings import PROJECT_ROOT, Settings, load_settings
from tests.unit.test_readme_settings import code_env_names, config_env_names, settings_env_names

CONFIG = PROJECT_ROOT / "config"


def _load(env: dict[str, str]) -> Settings:
    with deployplan.environment(env):
        settings = load_settings()
        problems = production_problems(settings)
        if problems:
            raise ConfigError("HUB_PROFILE=production refuses to start", problems)
        return settings


@pytest.fixture
def example_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The env example as the hub would read it, its secret files written in tmp_path."""
    yield deployplan.example_environment(deployplan.ENV_EXAMPLE, tmp_path, CONFIG)


def test_the_production_profile_accepts_the_env_example(example_env: dict[str, str]) -> None:
    settings = _load(example_env)
    assert settings.profile == "production"
    assert not settings.kafka_embedded and not settings.mongo_embedded and settings.http_tls
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)
    assert settings.kafka_idempotent and not settings.kafka_exact_offsets and not settings.journal_events
    with deployplan.environment(example_env):
        embedded = [s.name for s in Infra(settings).servers if not s.external]
    assert embedded == []  # nothing hub run would start itself (AMQP included: HUB_AMQP_URL_FILE)
    assert {t.name for t in settings.admin_tokens} == {"ops-oncall", "noc"}


@pytest.mark.parametrize("variable", ["HUB_KAFKA_URL", "HUB_MONGO_URL_FILE", "HUB_SFTP_ENABLED",
                                      "HUB_ESOP_API_KEY_FILE", "HUB_ADMIN_VIEWER_TOKEN_FILE"])
def test_the_production_profile_refuses_the_example_without_a_required_variable(
        example_env: dict[str, str], variable: str) -> None:
    example_env.pop(variable)
    with pytest.raises(ConfigError) as err:
        _load(example_env)
    assert any(variable.removesuffix("_FILE") in p for p in err.value.problems or []), err.value.problems


def test_without_tls_files_production_refuses_plain_http(example_env: dict[str, str]) -> None:
    for key in ("HUB_HTTP_TLS_CERT", "HUB_HTTP_TLS_KEY", "HUB_HTTP_TLS_CLIENT_CA"):
        example_env.pop(key)
    with pytest.raises(ConfigError) as err:
        _load(example_env)
    assert any("HUB_HTTP_TLS_CERT" in p for p in err.value.problems or [])


def test_every_partner_secret_production_needs_is_in_the_example(example_env: dict[str, str]) -> None:
    """Each ``${VAR:-dev-…}`` of config/ (generated into the example): without it production refuses."""
    needed = deployplan.dev_secret_variables(CONFIG)
    assert len(needed) > 20 and "HUB_ESOP_API_KEY" in needed
    missing = [v for v in needed if f"{v}_FILE" not in example_env and v not in example_env]
    assert not missing, f"run python -m app.deployplan: {missing}"


def test_every_hub_variable_of_the_example_is_one_the_hub_reads() -> None:
    values, _ = deployplan.read_env_file(deployplan.ENV_EXAMPLE)
    known = {**settings_env_names(), **config_env_names(), **code_env_names()}
    unknown = [k for k in values if k.startswith("HUB_") and k not in known and k.removesuffix("_FILE") not in known]
    assert not unknown, f"config/deploy/production.env.example sets variables nothing reads: {unknown}"
    assert not [k for k in values if not k.startswith("HUB_")]


def test_a_value_that_does_not_validate_names_its_variable(example_env: dict[str, str]) -> None:
    example_env["HUB_KAFKA_MIN_INSYNC_REPLICAS"] = "4"  # above the replication factor of 3
    with pytest.raises(ConfigError) as err:
        _load(example_env)
    assert "kafka_min_insync_replicas" in str(err.value.problems)


def test_the_generated_files_are_current() -> None:
    """config/deploy/kafka-topics.yaml, the env example's secrets block and docs/deploy.md's index
    table = what the code declares now (a new partner, route, topic or index makes this fail)."""
    stale = [str(p.relative_to(PROJECT_ROOT)) for p, text in deployplan.generated().items()
             if p.read_text(encoding="utf-8") != text]
    assert not stale, f"stale: {stale}; run python -m app.deployplan"


def test_the_topic_plan_follows_the_code_when_a_partner_is_added(tmp_path: Path) -> None:
    """The plan is derived, not listed: a partner added to the configuration brings its topics (and a
    plan generated before it lacks them, so the staleness test above fails)."""
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config, ignore=shutil.ignore_patterns("deploy"))
    text = (config / "partners" / "yunneng.yaml").read_text(encoding="utf-8")
    (config / "partners" / "newco.yaml").write_text(text.replace("yunneng", "newco"), encoding="utf-8")
    settings = deployplan.example_settings(deployplan.ENV_EXAMPLE, config)
    names = {t.name: t for t in deployplan.topic_plan(settings)}
    shipped = {t["name"] for t in yaml.safe_load(deployplan.TOPIC_PLAN.read_text(encoding="utf-8"))["topics"]}
    assert {"hub.in.newco", "hub.out.newco", "hub.in.newco.dlq"} <= set(names) - shipped
    assert names["hub.in.newco"].partitions == 12 and names["hub.in.newco.dlq"].created_by == "operator"
    assert set(names) - shipped <= {n for n in names if ".newco" in n}


def test_the_topic_plan_has_what_the_runtime_creates() -> None:
    plan = yaml.safe_load(deployplan.TOPIC_PLAN.read_text(encoding="utf-8"))
    by_name = {t["name"]: t for t in plan["topics"]}
    assert (plan["replication_factor"], plan["min_insync_replicas"]) == (3, 2)
    assert {"hub.orders", "hub.orders.dlq", "hub.in.esop", "hub.out.esop", "hub.__hub-broker-epoch",
            "hub-__assignor-__leader", "hub.reports.daily"} <= set(by_name)
    assert by_name["hub.__hub-broker-epoch"]["partitions"] == 1
    assert all(t["kind"] in plan["kinds"] for t in plan["topics"])


def test_every_index_has_its_reason_and_no_reason_is_left_over() -> None:
    declared = {(c, d["name"]) for c, docs in deployplan.declared_indexes().items() for d in docs}
    assert len(declared) > 30 and ("orders", "by_wake") in declared
    assert not declared - set(deployplan.INDEX_WHY), "add to app/deployplan.py INDEX_WHY"
    assert not set(deployplan.INDEX_WHY) - declared, "INDEX_WHY names indexes nothing declares: remove them"


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section → key → every value (``Environment=`` may repeat), comments dropped."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            section.setdefault(key, []).append(value)
    return out


def test_the_systemd_unit_runs_hub_with_the_example_environment() -> None:
    service = unit_file(deployplan.DEPLOY / "hub@.service")["Service"]
    assert service["ExecStart"][0].split()[1:] == ["run"]
    assert service["EnvironmentFile"] == ["/etc/hub/hub.env"]
    assert {"HUB_HTTP_PORT=%i", "HUB_WORKER_ID=%H-%i"} == set(service["Environment"])
    values, _ = deployplan.read_env_file(deployplan.ENV_EXAMPLE)
    assert "HUB_HTTP_PORT" not in values and "HUB_WORKER_ID" not in values  # per instance, from the unit
    assert values["HUB_HOME"] in service["ReadWritePaths"]


@pytest.mark.parametrize(("unit", "instance", "role"), [
    ("hub@.service", "8081", "all"), ("hub-worker@.service", "8091", "worker"),
    ("hub-intake@.service", "9081", "intake"),
])
def test_each_process_unit_starts_its_role_with_the_example_environment(
        example_env: dict[str, str], unit: str, instance: str, role: str) -> None:
    """The three units of docs/deploy.md "Processes" (role all; separate workers and intakes): the same
    command and environment file, their own role and listeners, accepted by the production profile."""
    service = unit_file(deployplan.DEPLOY / unit)["Service"]
    assert service["ExecStart"][0].split()[1:] == ["run"] and service["EnvironmentFile"] == ["/etc/hub/hub.env"]
    own = dict(v.replace("%i", instance).replace("%H", "host-a").split("=", 1) for v in service["Environment"])
    settings = _load({**example_env, **own})
    assert settings.role == role and settings.worker_id.startswith("host-a-")
    if role == "intake":  # every intake of a host on one port, each probed and scraped on its own
        assert (settings.http_port, settings.http_reuse_port, settings.http_probe_port) == (8443, True, int(instance))
    else:
        assert (settings.http_port, settings.http_reuse_port, settings.http_probe_port) == (int(instance), False, None)
