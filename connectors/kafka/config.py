"""Configuration of the external-Kafka connector (a partner's own cluster or topic)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.kafka import client_options
from hub.settings import Settings


class KafkaConnection(BaseModel):
    """``bootstrap_servers`` unset ⇒ the hub's own cluster (e.g. to push a hub topic to a partner sink),
    reached with the hub's own connection (``HUB_KAFKA_SECURITY_PROTOCOL`` …, :func:`hub.kafka.client_options`);
    the security fields here are a partner cluster's and need ``bootstrap_servers``."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str | None = Field(default=None, examples=["kafka1.partner:9093,kafka2.partner:9093"])
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: str | None = None
    request_timeout_ms: int = Field(default=10_000, ge=500)

    @model_validator(mode="after")
    def _sasl(self) -> KafkaConnection:
        if self.security_protocol.startswith("SASL") and (not self.sasl_mechanism or not self.username):
            raise ValueError(f"{self.security_protocol} needs sasl_mechanism, username and password")
        own = {"security_protocol": self.security_protocol != "PLAINTEXT", "sasl_mechanism": self.sasl_mechanism,
               "username": self.username, "password": self.password, "ssl_cafile": self.ssl_cafile}
        given = [name for name, value in own.items() if value]
        if self.bootstrap_servers is None and given:
            raise ValueError(f"{', '.join(given)} without bootstrap_servers: the hub's own cluster is reached with "
                             "the hub's settings (HUB_KAFKA_SECURITY_PROTOCOL …); set bootstrap_servers for a "
                             "partner's cluster")
        return self

    def client_kwargs(self, settings: Settings) -> dict[str, Any]:
        if self.bootstrap_servers is None:  # the hub's own cluster: its own TLS / SASL
            return {**client_options(settings), "request_timeout_ms": self.request_timeout_ms}
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password.get_secret_value() if self.password else None)
        if self.security_protocol.endswith("SSL"):
            import ssl

            kw["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return kw


class KafkaSourceConfig(BaseModel):
    """Consume a topic; offsets are committed only after the envelopes are on the hub's Kafka."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    connection: KafkaConnection = Field(default_factory=KafkaConnection)
    topic: str = Field(min_length=1, max_length=249)
    group_id: str | None = Field(default=None, description="default: hub-{route}")
    body: Literal["json", "envelope"] = Field(default="json", description="json: a partner record; envelope: hub's own")
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_records: int = Field(default=500, ge=1, le=10_000)
    retry_delay_s: float = Field(default=2.0, ge=0)
    session_timeout_ms: int = Field(default=10_000, ge=1000, description="group membership; lower = faster rejoin")
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)


class KafkaSinkConfig(BaseModel):
    """Produce to a partner topic with acks=all; key = the order id (per-order ordering)."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    connection: KafkaConnection = Field(default_factory=KafkaConnection)
    topic: str = Field(min_length=1, max_length=249)
    body: Literal["payload", "envelope"] = "payload"
    timeout_s: float = Field(default=10.0, gt=0)
