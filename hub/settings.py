"""Process settings: environment ``HUB_*`` (or a file named by ``HUB_*_FILE``) over
``config/hub.yaml`` over defaults.

One model, validated at start; an invalid value stops the hub with a message naming the key
(and, for the YAML file, its line). Embedded servers are used only where no external URL is set.
"""

from __future__ import annotations

import json
import os
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from hub.configfile import env_value, format_loc, line_of, read_yaml
from hub.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_config_dir() -> Path:
    return Path(os.environ.get("HUB_CONFIG_DIR") or PROJECT_ROOT / "config")


class _YamlSource(YamlConfigSettingsSource):
    """``hub.yaml`` from the config folder, below the environment: pydantic-settings' YAML source
    reading through the hub's YAML reader (:func:`hub.configfile.read_yaml`), so ``${VAR}`` expands
    and a syntax error is ``file:line: …``; a value that does not validate is reported with its
    line by :func:`load_settings` (``file:line: key: message``)."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        path = Path(str(file_path))
        data, node = read_yaml(path)
        if data is None:
            return {}
        if not isinstance(data, dict):
            line = node.start_mark.line + 1 if node is not None else 1
            raise ConfigError(f"{path} is invalid", [f"{path}:{line}: (document): settings must be a mapping of keys"])
        return data


class _FileEnvSource(PydanticBaseSettingsSource):
    """``HUB_<KEY>_FILE=/path``: the setting ``HUB_<KEY>`` read from that file, for every setting
    (``hub.configfile.env_value``: secrets mounted as files never appear in the environment)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return env_value(f"HUB_{field_name.upper()}"), field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            if os.environ.get(f"HUB_{name.upper()}_FILE"):
                out[name] = self.get_field_value(None, name)[0]
        return out


class AdminToken(BaseModel):
    """One admin API credential: ``name`` is who the audit trail records, ``role`` what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Literal["viewer", "operator"]
    token: SecretStr = Field(min_length=16)


def parse_admin_tokens(v: Any) -> Any:
    """``name:role:token,name:role:token`` (env-friendly) or a JSON list; lists pass through."""
    if not isinstance(v, str):
        return v
    text = v.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    out = []
    for item in text.split(","):
        parts = item.strip().split(":", 2)
        if len(parts) != 3:
            raise ValueError("HUB_ADMIN_TOKENS items must be name:role:token")
        out.append({"name": parts[0], "role": parts[1], "token": parts[2]})
    return out


class Settings(BaseSettings):
    """Everything a hub process needs to know before it starts."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore", validate_default=True)

    profile: Literal["embedded", "production"] = Field(
        default="embedded",
        description="embedded: start the embedded servers where no URL is set, dev- secrets allowed. "
        "production: refuse both, naming the missing setting (hub/profiles.py).",
    )

    # where things live
    home: Path = Field(default=PROJECT_ROOT / ".hub", description="Runtime folder: data, logs, pid files.")
    config_dir: Path = Field(default_factory=_default_config_dir, description="Partners, routes, flows.")

    # Kafka: external when kafka_url is set, else the embedded tansu broker on kafka_port
    kafka_url: str | None = Field(default=None, description="bootstrap servers, e.g. kafka1:9092,kafka2:9092")
    kafka_port: int = Field(default=19092, ge=1, le=65535)
    kafka_exact_offsets: bool = Field(
        default=True,
        description="Work around tansu's ListOffsets bug (one record per batch). Turn off on real Kafka.",
    )
    topic_prefix: str = Field(default="hub", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
    topic_partitions: int = Field(default=4, ge=1, le=256)
    consumer_group: str | None = Field(
        default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$",
        description="Kafka consumer group of the workers (default: the topic prefix, one group per deployment).",
    )
    kafka_request_timeout_ms: int = Field(default=5000, ge=500)
    # a real cluster (docs/deploy.md): each topic on 3 brokers, a write acknowledged by 2 of them
    kafka_replication_factor: int = Field(
        default=1, ge=1, le=7,
        description="replicas of every topic the hub creates (its own and faust's); 3 on a production cluster. "
        "Above the number of brokers the topics are not created (the broker refuses them).",
    )
    kafka_min_insync_replicas: int | None = Field(
        default=None, ge=1, le=7,
        description="min.insync.replicas of the topics the hub creates (unset: the broker's default); 2 with "
        "replication factor 3, so an acks=all write survives a broker loss and one broker may be down.",
    )
    kafka_idempotent: bool = Field(
        default=False,
        description="idempotent producer (enable.idempotence): a write the client retries after a lost "
        "acknowledgement is stored once. Needs a broker with producer ids (Kafka ≥ 0.11); off on tansu.",
    )

    # Kafka security of the hub's own cluster (hub/kafka.py client_options, docs/deploy.md "Kafka: TLS and SASL")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="how every Kafka client of the hub talks to its own brokers: SSL = TLS, SASL_SSL = SASL over "
        "TLS (production), SASL_PLAINTEXT = SASL without TLS (with PLAIN the password crosses the network in clear)",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (SASL_* protocols only)")
    kafka_sasl_username: str | None = Field(default=None, min_length=1, description="SASL user (SASL_* protocols)")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, min_length=1,
        description="SASL password (SASL_* protocols); give it as HUB_KAFKA_SASL_PASSWORD_FILE, never logged")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM bundle the brokers' certificates must chain to (SSL, SASL_SSL); unset: the "
        "system's trusted CAs")
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (with kafka_ssl_keyfile, or holding the key)")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM private key of kafka_ssl_certfile")
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="check that a broker's certificate names the host connected to; production "
        "refuses false")

    # MongoDB: external when mongo_url is set, else embedded SecantusDB on mongo_port
    mongo_url: str | None = None
    mongo_port: int = Field(default=27027, ge=1, le=65535)
    mongo_db: str = Field(default="hub", pattern=r"^[a-zA-Z0-9_-]+$")
    mongo_timeout_ms: int = Field(default=5000, ge=100)

    # SFTP (embedded OpenSSH sshd for the SFTP connector and its tests)
    sftp_enabled: bool = True
    sftp_port: int = Field(default=2222, ge=1, le=65535)

    # what this process runs (app/worker.py, docs/deploy.md "Processes"); `hub run --role` sets it too
    role: Literal["all", "intake", "worker"] = Field(
        default="all",
        description="all: worker and intake in one process. intake: the HTTP server (intake, callbacks, admin API, "
        "console, probes, /metrics) and the routes, no faust agents, engine, delivery, sweeps or jobs. worker: the "
        "faust agents, engine, delivery, sweeps and jobs, with an HTTP server for /healthz, /readyz and /metrics only.",
    )

    # HTTP server (intake, callbacks, admin API, health)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_reuse_port: bool = Field(
        default=False,
        description="bind the listener with SO_REUSEPORT, so several processes of one host share http_port "
        "(the kernel spreads new connections among them); every process sharing it must set it",
    )
    http_probe_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="a second listener of this process alone, same endpoints, never shared: where the balancer "
        "probes /readyz and Prometheus scrapes /metrics of each process when http_port is shared (http_reuse_port)",
    )
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="The URL partners reach this hub at (the address published in WSDLs); "
        "default http://{http_host}:{http_port}. Never taken from a request's Host header.",
    )
    intake_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # HTTPS (connectors/tls.py, app/web.py serve): TLS when a certificate and its key are given
    http_tls_cert: Path | None = Field(default=None, description="PEM certificate (chain) of the HTTPS listener")
    http_tls_key: Path | None = Field(default=None, description="PEM private key of http_tls_cert")
    http_tls_client_ca: Path | None = Field(
        default=None, description="PEM bundle client certificates must chain to; set: clients are asked for one "
        "(partners with auth kind: client_cert must present it)")
    http_tls_required: bool = Field(
        default=True, description="production refuses to start without http_tls_cert/key unless this is false "
        "(TLS ends at a proxy in front of the hub)")
    # slow clients (app/slowclients.py): a connection must deliver a complete request head within
    # this long of opening or of its previous answer (aiohttp's keep-alive timer, so it also closes
    # idle keep-alive connections); a request's whole body must arrive within the body bound
    http_header_timeout_s: float = Field(default=15.0, gt=0, le=3600)
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # JSON/XML nesting limit on every ingress (hub/jsonlimits.py); capped below BSON's 100 levels,
    # since an accepted body is stored inside the order and intake documents
    intake_max_depth: int = Field(default=64, ge=4, le=90)
    # one durable path per event (docs/flows.md): with an external Kafka the broker is it and MongoDB
    # keeps only the idempotency key; the embedded broker keeps topics in memory, so there the intake
    # record and the callback journal keep the envelope too (re-sent after a broker restart)
    event_journal: Literal["auto", "on", "off"] = Field(
        default="auto", description="keep accepted envelopes in MongoDB: auto = only with the embedded broker")

    replay_patch_max_bytes: int = Field(
        default=1_048_576, ge=1024, le=64 * 1_048_576,
        description="Largest payload a dead-letter replay patch may produce (UTF-8 JSON bytes); over it the "
        "replay is refused (413), before the body is built (app/admin/patch.py).",
    )
    worker_id: str = Field(default="hub-worker", pattern=r"^[a-zA-Z0-9._-]+$")
    tracing: bool = Field(
        default=True,
        description="Call-chain spans (hub/tracing.py): summarised in MongoDB order_traces, exported when "
        "otlp_endpoint is set. false: no spans at all (the bench's baseline; an escape hatch).",
    )
    otlp_endpoint: str | None = Field(
        default=None, pattern=r"^https?://",
        description="OTLP/HTTP collector for the call-chain spans, e.g. http://otel-collector:4318 (``/v1/traces`` "
        "is added); unset: spans are only summarised per order in MongoDB order_traces (hub/tracing.py).",
    )
    delivery_lease_s: float = Field(
        default=15.0, ge=1.0, le=600.0,
        description="Lease of a delivery claim (connectors/delivery/claims.py), renewed while the call runs; "
        "a claim lapsed this long (+ a third) is taken over, counted in hub_delivery_ambiguous_total.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    admin_tokens: Annotated[list[AdminToken], NoDecode] = Field(
        default_factory=list,
        description="Admin API bearer tokens with their role (hub/auth.py). Env HUB_ADMIN_TOKENS: "
        "'name:role:token,…' or a JSON list; never commit real tokens.",
    )

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, v: Any) -> Any:
        return parse_admin_tokens(v)

    @field_validator("home", "config_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Settings:
        insync = self.kafka_min_insync_replicas
        if insync is not None and insync > self.kafka_replication_factor:
            raise ValueError("kafka_min_insync_replicas above kafka_replication_factor: no write could be "
                             "acknowledged (HUB_KAFKA_MIN_INSYNC_REPLICAS, HUB_KAFKA_REPLICATION_FACTOR)")
        return self

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", mode="after")
    @classmethod
    def _existing_file(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        path = v.expanduser()
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path.resolve()

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        env = f"HUB_KAFKA_SECURITY_PROTOCOL={protocol}"
        sasl = {"HUB_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
                "HUB_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
                "HUB_KAFKA_SASL_PASSWORD": self.kafka_sasl_password}
        if protocol.startswith("SASL_"):
            missing = [name for name, value in sasl.items() if value is None]
            if missing:
                hint = " (or HUB_KAFKA_SASL_PASSWORD_FILE)" if "HUB_KAFKA_SASL_PASSWORD" in missing else ""
                raise ValueError(f"{env} needs {', '.join(missing)}{hint}")
        elif any(value is not None for value in sasl.values()):
            given = [name for name, value in sasl.items() if value is not None]
            raise ValueError(f"{', '.join(given)} set but {env} has no SASL: use SASL_SSL (or SASL_PLAINTEXT), or "
                             "unset them")
        tls = {"HUB_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile is not None,
               "HUB_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile is not None,
               "HUB_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile is not None,
               "HUB_KAFKA_SSL_CHECK_HOSTNAME": not self.kafka_ssl_check_hostname}
        if not protocol.endswith("SSL") and any(tls.values()):
            given = [name for name, value in tls.items() if value]
            raise ValueError(f"{', '.join(given)} set but {env} has no TLS: use SSL (or SASL_SSL), or unset them")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("HUB_KAFKA_SSL_KEYFILE needs HUB_KAFKA_SSL_CERTFILE (the client certificate of the key)")
        return self

    @model_validator(mode="after")
    def _probe_port_apart(self) -> Settings:
        if self.http_probe_port is not None and self.http_probe_port == self.http_port:
            raise ValueError("http_probe_port must differ from http_port: it is this process's own listener "
                             "(HUB_HTTP_PROBE_PORT, HUB_HTTP_PORT)")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError("http_tls_cert and http_tls_key go together (HUB_HTTP_TLS_CERT, HUB_HTTP_TLS_KEY)")
        if self.http_tls_client_ca is not None and self.http_tls_cert is None:
            raise ValueError("http_tls_client_ca needs TLS: set HUB_HTTP_TLS_CERT and HUB_HTTP_TLS_KEY")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = _YamlSource(settings_cls, yaml_file=_default_config_dir() / "hub.yaml")
        return (init_settings, env_settings, _FileEnvSource(settings_cls), yaml_source, file_secret_settings)

    # derived values
    @property
    def kafka_embedded(self) -> bool:
        return not self.kafka_url

    @property
    def journal_events(self) -> bool:
        """Keep accepted envelopes in MongoDB (``event_journal``; auto: when the broker is not durable)."""
        return self.event_journal == "on" or (self.event_journal == "auto" and self.kafka_embedded)

    @property
    def group_id(self) -> str:
        """The workers' consumer group (and faust app id). Per deployment, not a constant: two hubs on
        one cluster sharing a group rebalanced each other forever (seen with the test suite's hubs,
        each on its own prefix: a worker re-joined every 4 s for a minute and never became ready)."""
        return self.consumer_group or self.topic_prefix

    @property
    def mongo_embedded(self) -> bool:
        return not self.mongo_url

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_url or f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        return self.mongo_url or f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"

    @property
    def http_tls(self) -> bool:
        """The listener serves HTTPS (a certificate and key are configured)."""
        return self.http_tls_cert is not None

    @property
    def public_base_url(self) -> str:
        """Where partners reach this hub, without a trailing slash (``public_url`` or the listener)."""
        scheme = "https" if self.http_tls else "http"
        return (self.public_url or f"{scheme}://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


def _secret(key: str) -> bool:
    """Settings whose value must never appear in an error: tokens, keys, passwords, URLs that may
    carry credentials (``mongodb://user:pass@…``)."""
    return key == "admin_tokens" or any(w in key for w in ("token", "secret", "password", "key", "url"))


def load_settings(**overrides: Any) -> Settings:
    """Build Settings; turn pydantic's error into a ConfigError naming the env var or YAML line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        yaml_path = _default_config_dir() / "hub.yaml"
        node = None
        yaml_keys: set[str] = set()
        if yaml_path.is_file():
            data, node = read_yaml(yaml_path)
            yaml_keys = set((data or {}).keys())
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "?"
            env = f"HUB_{key.upper()}"
            if env in os.environ and _secret(key):  # its value is a credential: name the variable only
                problems.append(f"environment {env} (value not shown): {err['msg']}")
            elif env in os.environ:
                problems.append(f"environment {env}={os.environ[env]!r}: {err['msg']}")
            elif os.environ.get(f"{env}_FILE"):  # the value is a secret: name the file, never print it
                problems.append(f"environment {env}_FILE={os.environ[env + '_FILE']}: {err['msg']}")
            elif key in yaml_keys:
                line = line_of(node, tuple(err["loc"]))
                problems.append(f"{yaml_path}:{line}: {format_loc(tuple(err['loc']))}: {err['msg']}")
            else:
                problems.append(f"{key}: {err['msg']}")
        raise ConfigError("invalid hub settings", problems) from None  # pydantic's error quotes every input value
