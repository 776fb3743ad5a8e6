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
from typing import Annotated, Any, Literal, Protocol, Union, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    create_model,
)

from connectors.registry import registry
from hub.retry import RetryPolicy
from transforms.mapping import Transform


class RouteSpec(Protocol):
    """What the code reads of a validated route. The ``Route`` model is built at run time
    (:func:`route_model`: a union over the registered connectors), so a type checker cannot see its
    fields; :func:`validate_route` returns it as this protocol instead of a bare ``BaseModel``."""

    name: str
    description: str
    enabled: bool
    source: Any  # the connector's config model; ``source.connector`` is its registered name
    transform: Transform | None
    canonical: str
    envelope_type: str | None
    target: Any  # TopicTarget | SinkTarget


def validate_route(data: Any) -> RouteSpec:
    """``route_model().model_validate(data)``, typed (raises pydantic's ``ValidationError``)."""
    return cast("RouteSpec", route_model().model_validate(data))


#: What a route's records are validated as (``work_order``: a WorkOrder with derived order id and idempotency key).
Canonical = Literal["work_order", "none"]


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
