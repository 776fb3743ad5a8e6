"""Process-level AMQP settings (``HUB_AMQP_*``): where the embedded RabbitMQ listens, or the URL of
an external broker. Kept beside the connector so the core settings need not know about AMQP."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AmqpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_AMQP_", extra="ignore")

    enabled: bool = Field(default=False, description="start the embedded RabbitMQ even without AMQP routes")
    url: SecretStr | None = Field(default=None, description="external broker, e.g. amqps://user:pw@mq:5671/vhost")
    port: int = Field(default=5672, ge=1, le=65535, description="embedded RabbitMQ AMQP port")
    dist_port: int | None = Field(default=None, ge=1, le=65535, description="Erlang distribution port")

    @property
    def embedded_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def broker_url(self) -> str:
        return self.url.get_secret_value() if self.url else self.embedded_url
