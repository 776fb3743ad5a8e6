"""The route file model. One YAML file per route under ``config/routes/``::

    name: boss-sftp-orders
    source:   {connector: sftp, partner: boss, dir: /drop/boss, pattern: "*.csv", format: csv}
    transform:
      field_map: {ORDER_NO: external_order_id}
      value_map: {scenario: {"01": open}}
      defaults: {product: internet_line}
      python: boss_flat_order
    canonical: work_order          # validate as a WorkOrder, derive order id + idempotency key
    target: {topic: inbound}       # or {sink: {connector: sftp, ...}}

``source`` and ``target.sink`` are pydantic discriminated unions (on ``connector``) over the config
models the connectors registered (``connectors/registry.py``), so validation, error messages and the
JSON Schema for editors (``hub routes schema``) all come from the connectors' own models.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from connectors.registry import registry
from hub.retry import RetryPolicy
from transforms import hooks

#: What a route's records are validated as (``work_order``: a WorkOrder with derived order id and idempotency key).
Canonical = Literal["work_order", "none"]


class Transform(BaseModel):
    """Declarative mapping applied to the source's payload (partner shape → canonical shape)."""

    model_config = ConfigDict(extra="forbid")

    field_map: dict[str, str] = Field(
        default_factory=dict, description="partner field (dotted) → canonical field (dotted)",
        examples=[{"ORDER_NO": "external_order_id", "CUST_NAME": "customer.name"}],
    )
    value_map: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical field → {partner code: canonical value}",
        examples=[{"scenario": {"01": "open", "02": "change"}}],
    )
    strict_values: list[str] = Field(
        default_factory=list, description="fields whose code must be in value_map (unknown code = rejected)"
    )
    defaults: dict[str, Any] = Field(default_factory=dict, description="canonical field → value when absent")
    python: str | None = Field(default=None, description="name of a transform in transforms/ (hooks registry)")
    drop: list[str] = Field(default_factory=list, description="fields removed after mapping")
    direction: Literal["to_canonical", "to_partner"] = Field(
        default="to_canonical",
        description="to_partner: apply field_map and value_map backwards (canonical → partner), so an "
                    "outbound route reuses the inbound mapping block unchanged",
    )

    @model_validator(mode="after")
    def _invertible(self) -> Transform:
        if self.direction == "to_partner":
            for path, codes in self.value_map.items():
                dup = {v for v in codes.values() if list(codes.values()).count(v) > 1}
                if dup:
                    raise ValueError(f"value_map.{path}: {sorted(dup)} map from several codes; cannot invert")
        return self

    @field_validator("python")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in hooks.names():
            raise ValueError(f"unknown python transform {v!r} (known: {', '.join(hooks.names())})")
        return v


class TopicTarget(BaseModel):
    """Publish to a hub topic. ``inbound`` = ``{p}.in.{partner}`` (the order path), ``orders`` =
    ``{p}.orders``, ``outbound`` = ``{p}.out.{partner}``, anything else = ``{p}.{topic}``."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(default="inbound", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
    partner: str | None = Field(default=None, description="defaults to the source's partner")


def _tagged(kind: str, name: str, config: type[BaseModel]) -> type[BaseModel]:
    """The connector's own config model plus ``connector: Literal[name]`` (the union's tag)."""
    tag: Any = Literal[name]  # a Literal built from a runtime name: a value here, not a static type
    return create_model(
        f"{name.capitalize()}{kind.capitalize()}",
        __base__=config,
        __doc__=config.__doc__,
        connector=(tag, Field(description=f"{kind} connector")),
    )


@functools.cache
def tagged_models(kind: str) -> dict[str, type[BaseModel]]:
    return {n: _tagged(kind, n, registry.get(kind, n).config) for n in registry.names(kind)}


def _union(kind: str) -> Any:
    models = tuple(tagged_models(kind).values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="connector")]  # noqa: UP007 - runtime tuple


def _target_kind(value: Any) -> str:
    """``target`` is a sink when it has a ``sink`` key, else a topic (one clear error either way)."""
    if isinstance(value, dict):
        return "sink" if "sink" in value else "topic"
    return "sink" if getattr(value, "sink", None) is not None else "topic"


@functools.cache
def route_model() -> type[BaseModel]:
    """Build the Route model from whatever connectors are registered (cached per process)."""
    target: Any = TopicTarget
    if tagged_models("sink"):
        sink_target = create_model(
            "SinkTarget",
            __config__=ConfigDict(extra="forbid"),
            __doc__="Deliver each envelope to a partner sink directly (outcome decides ack/retry).",
            sink=(_union("sink"), Field(description="the sink connector and its config")),
            policy=(RetryPolicy, Field(default_factory=RetryPolicy, description=(
                "timeout, retries with backoff, concurrency: the same delivery chain as a partner's "
                "outbound.policy; given up ⇒ dead letter"))),
        )
        target = Annotated[
            Annotated[TopicTarget, Tag("topic")] | Annotated[sink_target, Tag("sink")],
            Discriminator(_target_kind),
        ]
    return create_model(
        "Route",
        __config__=ConfigDict(extra="forbid"),
        __doc__="One route: a source, an optional transform, a target.",
        name=(str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$", description="unique; defaults to the file name")),
        description=(str, ""),
        enabled=(bool, True),
        source=(_union("source"), ...),
        transform=(Transform | None, None),
        canonical=(
            Canonical,
            Field(default="none", description="work_order: validate as WorkOrder, derive order id/idempotency"),
        ),
        envelope_type=(str | None, Field(default=None, description="defaults to order.received / record.received")),
        target=(target, Field(default_factory=TopicTarget)),
    )


def route_schema() -> dict[str, Any]:
    """JSON Schema of a route file, for editors (``hub routes schema``)."""
    schema = route_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hub route"
    return schema
