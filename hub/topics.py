"""Topic naming scheme — the one place topic names are made (see README, "Topics").

=======================  ===========================================================
``{p}.in.{partner}``     canonical envelopes received from a partner (any protocol)
``{p}.orders``           order events: received orders, call results, callbacks,
                         manual submissions — keyed by order id
``{p}.out.{partner}``    outbound call envelopes to one partner (one delivery agent each)
``{topic}.dlq``          dead letters of ``{topic}``: original envelope + error + attempts
``{p}.route.{route}``    names what a route's sink gave up on (its dead letters' source topic;
                         nothing is produced there — the route's source is the input)
=======================  ===========================================================

``{p}`` is ``HUB_TOPIC_PREFIX`` (default ``hub``), so several hubs can share one cluster.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
DLQ_SUFFIX = ".dlq"


def _check(partner: str) -> str:
    if not _NAME.match(partner):
        raise ValueError(f"partner name {partner!r} cannot be used in a topic name")
    return partner


def inbound(prefix: str, partner: str) -> str:
    return f"{prefix}.in.{_check(partner)}"


def orders(prefix: str) -> str:
    return f"{prefix}.orders"


def outbound(prefix: str, partner: str) -> str:
    return f"{prefix}.out.{_check(partner)}"


def route(prefix: str, name: str) -> str:
    return f"{prefix}.route.{_check(name)}"


def dead_letter(topic: str) -> str:
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


def is_dead_letter(topic: str) -> bool:
    return topic.endswith(DLQ_SUFFIX)


def source_of_dead_letter(topic: str) -> str:
    return topic[: -len(DLQ_SUFFIX)] if is_dead_letter(topic) else topic


def partner_of(topic: str) -> str | None:
    """The partner a ``{p}.in.{partner}`` / ``{p}.out.{partner}`` topic (or its ``.dlq``) belongs to.

    Why: a record that is not even an envelope still came from somewhere; the topic name is the one
    thing that always says which partner (the prefix may itself contain dots, so parse from the right).
    """
    parts = source_of_dead_letter(topic).rsplit(".", 2)
    if len(parts) == 3 and parts[1] in ("in", "out") and _NAME.match(parts[2]):
        return parts[2]
    return None
