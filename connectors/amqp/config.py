"""Configuration of the AMQP 0-9-1 connector (RabbitMQ, aio-pika)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.cryptocontract import CryptoContract
from hub.partner_auth import RateLimit


class AmqpConnection(BaseModel):
    """``url`` unset ⇒ the hub's embedded RabbitMQ (``HUB_AMQP_URL`` / ``HUB_AMQP_PORT``)."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr | None = Field(default=None, examples=["amqps://hub:${MQ_PASSWORD}@mq.partner:5671/orders"])
    heartbeat_s: int = Field(default=30, ge=0)


class AmqpSourceConfig(BaseModel):
    """Consume one queue. A message is acked only after its envelope is on Kafka; a message that can
    never be accepted is dead-lettered — published to ``dead_letter_exchange`` with the reason in
    the ``x-hub-reject-reason`` header (publisher-confirmed), then acked; Kafka/MongoDB down ⇒ nack
    and requeue after ``retry_delay_s``. A message over ``max_message_bytes`` or one whose encrypted
    fields (the partner's crypto contract) do not decrypt is dead-lettered with the reason;
    ``rate_limit`` makes the consumer wait (the rest stays in the queue), never drop."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    connection: AmqpConnection = Field(default_factory=AmqpConnection)
    queue: str = Field(min_length=1, max_length=255, examples=["workorders.in"])
    declare: bool = Field(default=True, description="declare the queue (durable) and its dead-letter exchange/queue")
    dead_letter_exchange: str | None = Field(default=None, description="default: '{queue}.dlx'")
    prefetch: int = Field(default=100, ge=1, le=10_000)
    batch_size: int | None = Field(
        default=None, ge=1, le=10_000, description="messages emitted together (one MongoDB round trip for their "
        "duplicate check, one Kafka write, one multiple ack after both); at most prefetch; default prefetch/2, so "
        "the next batch is delivered while one is written")
    batch_max_wait_s: float = Field(
        default=0.005, ge=0, le=5, description="how long a batch waits for more messages after its first (0: only "
        "those already delivered); the latency a lone message pays for batching")
    encoding: str = "utf-8"
    retry_delay_s: float = Field(default=2.0, ge=0)
    max_message_bytes: int | None = Field(
        default=None, ge=1024, description="largest message body accepted; over it the message is dead-lettered "
        "'too large' with its size and the limit; default HUB_INTAKE_MAX_BODY_BYTES")
    rate_limit: RateLimit | None = Field(
        default=None, description="messages/s and burst from this queue: the consumer waits for the bucket (at most "
        "prefetch messages unacked in the hub, the rest stays in the queue); default the partner's "
        "inbound.rest.rate_limit")
    crypto: CryptoContract | None = Field(
        default=None, description="the partner's crypto contract (set from its crypto: block): inbound_fields are "
        "decrypted before mapping, the key in the message's headers")

    @model_validator(mode="after")
    def _batch_fits_prefetch(self) -> AmqpSourceConfig:
        if self.batch_size is not None and self.batch_size > self.prefetch:
            raise ValueError(f"batch_size {self.batch_size} is over prefetch {self.prefetch}: the broker never "
                             "delivers more than prefetch unacked messages, so such a batch would never fill")
        return self

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
    crypto: CryptoContract | None = Field(
        default=None, description="set from the partner's crypto: block (app/delivery.py): the operation's request "
        "fields of the published body encrypted, the key in the message's headers")
