"""Deployment profiles: ``HUB_PROFILE=embedded`` (the default) and ``production``.

Why: every secret in the shipped configuration falls back to a published ``dev-…`` value, and
``hub run`` starts the in-memory broker and the embedded (GPL) database wherever a URL is unset.
Both are right for a laptop and the tests, and wrong in production, where they fail *silently*:
orders land in a broker that forgets them on restart, and anyone who read the README can call
the intake. The production profile turns each of those into a refusal at start that names the
setting to provide (the environment variable, or the ``file:line: key`` that resolved to a
``dev-`` value), so an operator fixes the deployment instead of discovering it later.

The embedded servers are refused again where they are started (``app/infra/manager.py``), so
``hub infra up`` in production refuses too. Production also answers partners over HTTPS only
(:func:`tls_problems`, unless ``HUB_HTTP_TLS_REQUIRED=false``: TLS ends at a proxy) and never calls
one without verifying its certificate (:func:`insecure_tls_problems`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from hub.configfile import ENV_REF, env_value, format_loc
from hub.errors import ConfigError
from hub.settings import Settings

DEV_PREFIX = "dev-"
#: keys whose literal (not ``${VAR}``) value is a secret: a ``dev-`` literal there is refused too
SECRET_KEYS = frozenset({"token", "key", "keys", "password", "secret", "api_key", "passphrase"})
#: the files that may hold secrets, relative to the config folder
SECRET_FILES = ("hub.yaml", "partners/*.yaml", "routes/*.yaml")


def embedded_problems(settings: Settings) -> list[str]:
    """What production would have to start itself, each naming the setting that avoids it."""
    problems = []
    if settings.kafka_embedded:
        problems.append("HUB_KAFKA_URL: not set; production does not start the embedded Kafka broker (tansu) — "
                        "set the bootstrap servers, e.g. HUB_KAFKA_URL=kafka1:9092,kafka2:9092")
    if settings.mongo_embedded:
        problems.append("HUB_MONGO_URL: not set; production does not start the embedded MongoDB (SecantusDB) — "
                        "set HUB_MONGO_URL (or HUB_MONGO_URL_FILE) to the cluster's connection string")
    if settings.sftp_enabled:
        problems.append("HUB_SFTP_ENABLED: production does not start the embedded sshd — set HUB_SFTP_ENABLED=false "
                        "(SFTP routes name their partner's server)")
    return problems


def tls_problems(settings: Settings) -> list[str]:
    """Production answers partners over HTTPS (issue 17 §4), unless TLS ends at a proxy in front of
    the hub and the operator says so (``HUB_HTTP_TLS_REQUIRED=false``)."""
    if settings.http_tls or not settings.http_tls_required:
        return []
    return ["HUB_HTTP_TLS_CERT / HUB_HTTP_TLS_KEY: not set; production serves HTTPS only — set both (PEM files; "
            "HUB_HTTP_TLS_CLIENT_CA too for client certificates), or HUB_HTTP_TLS_REQUIRED=false when TLS ends "
            "at a proxy in front of the hub"]


def kafka_tls_problems(settings: Settings) -> list[str]:
    """Production verifies its own brokers as it verifies partners: the broker certificate must name the
    host connected to (a certificate for any name the CA signed would do otherwise)."""
    if settings.kafka_ssl_check_hostname:
        return []
    return ["HUB_KAFKA_SSL_CHECK_HOSTNAME=false: production checks the Kafka brokers' host names — remove it and "
            "give the brokers certificates naming the hosts in HUB_KAFKA_URL"]


def insecure_tls_problems(path: Path) -> list[str]:
    """``file:line: key: …`` for every ``insecure_skip_verify: true`` (connectors/tls.py): outside
    production it is allowed with a WARNING at start; production never calls a partner unverified."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return []
    if node is None:
        return []
    return [f"{path}:{scalar.start_mark.line + 1}: {format_loc(loc)}: production never skips TLS verification — "
            "remove it and give the partner's CA as tls.ca_file"
            for loc, scalar in _scalars(node)
            if _key(loc) == "insecure_skip_verify" and scalar.tag == "tag:yaml.org,2002:bool"
            and scalar.value.lower() in ("true", "yes", "on")]


def _scalars(node: yaml.Node, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], yaml.ScalarNode]]:
    """Every scalar value of a composed YAML tree with its key path."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield from _scalars(value_node, (*loc, key_node.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _scalars(item, (*loc, i))
    elif isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
        yield loc, node


def _key(loc: tuple[Any, ...]) -> str | None:
    """The mapping key a value belongs to (``keys[0]`` → ``keys``)."""
    return next((part for part in reversed(loc) if isinstance(part, str)), None)


def dev_secret_problems(path: Path) -> list[str]:
    """``file:line: key: …`` for every value of ``path`` that resolves to a ``dev-`` value.

    A ``${VAR:-dev-…}`` whose ``VAR`` (and ``VAR_FILE``) is unset names ``VAR``; a ``VAR`` set to a
    ``dev-`` value is refused as well; so is a ``dev-`` literal under a secret key (``token``,
    ``password``, ``keys`` …)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return []  # unreadable or invalid: the loader reports it with its line
    if node is None:
        return []
    problems = []
    for loc, scalar in _scalars(node):
        where = f"{path}:{scalar.start_mark.line + 1}: {format_loc(loc)}"
        refs = list(ENV_REF.finditer(scalar.value))
        for ref in refs:
            name, default = ref.group(1), ref.group(2)
            value = env_value(name)
            if value is None and default is not None and default.startswith(DEV_PREFIX):
                problems.append(f"{where}: {name} is not set (nor {name}_FILE); production refuses the dev- default")
            elif value is not None and value.startswith(DEV_PREFIX):
                problems.append(f"{where}: {name} is a dev- value; production refuses it")
        if not refs and scalar.value.startswith(DEV_PREFIX) and _key(loc) in SECRET_KEYS:
            problems.append(f"{where}: a dev- secret written in the file; production refuses it — use ${{VAR}}")
    return problems


def settings_secret_problems(settings: Settings) -> list[str]:
    """``dev-`` values that reached the settings from the environment (``HUB_ADMIN_TOKENS``)."""
    if "HUB_ADMIN_TOKENS" not in os.environ and not os.environ.get("HUB_ADMIN_TOKENS_FILE"):
        return []  # from hub.yaml: dev_secret_problems names the file, line and variable
    return [f"HUB_ADMIN_TOKENS: the token of {t.name!r} is a dev- value; production refuses it"
            for t in settings.admin_tokens if t.token.get_secret_value().startswith(DEV_PREFIX)]


def production_problems(settings: Settings) -> list[str]:
    """Everything that stops a production start, all at once (one fix-and-retry round, not ten)."""
    problems = (embedded_problems(settings) + tls_problems(settings) + kafka_tls_problems(settings)
                + settings_secret_problems(settings))
    for pattern in SECRET_FILES:
        for path in sorted(settings.config_dir.glob(pattern)):
            problems += dev_secret_problems(path) + insecure_tls_problems(path)
    return problems


def check_profile(settings: Settings) -> None:
    """Raise ConfigError listing every problem when the production profile would not hold."""
    if settings.profile != "production":
        return
    problems = production_problems(settings)
    if problems:
        raise ConfigError("HUB_PROFILE=production refuses to start", problems)


__all__ = ["check_profile", "dev_secret_problems", "embedded_problems", "insecure_tls_problems", "kafka_tls_problems",
           "production_problems", "tls_problems"]
