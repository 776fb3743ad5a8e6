"""Configuration of the AMQP 0-9-1 connector (RabbitMQ, aio-pika)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AmqpConnection(BaseModel):
    """``url`` unset ⇒ the hub's embedded RabbitMQ (``HUB_AMQP_URL`` / ``HUB_AMQP_PORT``)."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr | None = Field(default=None, examples=["amqps://hub:${MQ_PASSWORD}@mq.partner:5671/orders"])
    heartbeat_s: int = Field(default=30, ge=0)


class AmqpSourceConfig(BaseModel):
    """Consume one queue. A message is acked only after its envelope is on Kafka; a message that can
    never be accepted is dead-lettered — published to ``dead_letter_exchange`` with the reason in
    the ``x-hub-reject-reason`` header (publisher-confirmed), then acked; Kafka/MongoDB down ⇒ nack
    and requeue after ``retry_delay_s``."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    connection: AmqpConnection = Field(default_factory=AmqpConnection)
    queue: str = Field(min_length=1, max_length=255, examples=["workorders.in"])
    declare: bool = Field(default=True, description="declare the queue (durable) and its dead-letter exchange/queue")
    dead_letter_exchange: str | None = Field(default=None, description="default: '{queue}.dlx'")
    prefetch: int = Field(default=100, ge=1, le=10_000)
    encoding: str = "utf-8"
    retry_delay_s: float = Field(default=2.0, ge=0)

    @property
    def dlx(self) -> str:
        return self.dead_letter_exchange or f"{self.queue}.dlx"


class AmqpSinkConfig(BaseModel):
    """Publish one envelope per delivery: persistent, mandatory, with publisher confirms."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    connection: AmqpConnection = Field(default_factory=AmqpConnection)
    exchange: str = Field(default="", description="'' = the default exchange (routing key = queue name)")
    routing_key: str = Field(examples=["workorders.out", "orders.{scenario}"])
    declare_queue: str | None = Field(default=None, description="declare this durable queue (tests, simple setups)")
    body: Literal["payload", "envelope"] = "payload"
    timeout_s: float = Field(default=10.0, gt=0)
