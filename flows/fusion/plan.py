"""The split of a complete fusion group into construction tasks (D.1.3, D.1.4, D.1.7), pure.

Every member computes the whole plan from the same inputs (the group's members as published at the
wait, the team table) and keeps its own task: so the plan is the same whichever member computes it,
on whichever worker, and however often (a redelivered event, a replay) — no member has to be "the
one that dispatches", and nothing is stored twice. A task's id is derived from the fusion key and the
normalised address, so the maintenance system sees one task per address however many members post to it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flows.fusion.address import normalise
from flows.fusion.config import FusionConfig


def install_address(addresses: Any) -> dict[str, Any]:
    """The member's installation address: its ``role: install`` entry, else its first address."""
    items = [a for a in (addresses or []) if isinstance(a, dict)]
    return next((a for a in items if a.get("role", "install") == "install"), items[0] if items else {})


def address_key(member: dict[str, Any]) -> tuple[str, str, str]:
    a = install_address(member.get("addresses"))
    n = normalise(str(a.get("detail") or ""), city=str(a.get("city") or ""), province=a.get("province"),
                  district=a.get("district"))
    return n.key, n.city, n.district


def task_id(fusion_key: str, key: str) -> str:
    return "T-" + hashlib.sha256(f"{fusion_key}|{key}".encode()).hexdigest()[:12]


def plan(fusion_key: str, members: dict[str, dict[str, Any]], config: FusionConfig, *,
         split_in_hub: bool = True) -> list[dict[str, Any]]:
    """The group's construction tasks: one per normalised installation address (``split_in_hub``), or
    one for the whole group (the partner splits). Members in order id order; the first contact is the
    task's line-bearing member (``config.line_bearing``), else its first member."""
    buckets: dict[str, list[str]] = {}
    where: dict[str, tuple[str, str]] = {}
    for order_id in sorted(members):
        key, city, district = address_key(members[order_id])
        bucket = key if split_in_hub else "*"
        buckets.setdefault(bucket, []).append(order_id)
        where.setdefault(bucket, (city, district))
    tasks = []
    for bucket, ids in sorted(buckets.items()):
        city, district = where[bucket]
        team = config.team(city, district) if split_in_hub else None
        line = [i for i in ids if members[i].get("product") in config.line_bearing]
        first = (line or ids)[0]
        tasks.append({
            "task_id": task_id(fusion_key, bucket), "address_key": bucket if split_in_hub else None,
            "city": city if split_in_hub else None, "district": district if split_in_hub else None,
            "team": team.model_dump() if team is not None else None, "first_contact_order": first,
            "members": [{"order_id": i, "external_order_id": members[i].get("external_order_id"),
                         "product": members[i].get("product"), "line_bearing": i in line} for i in ids]})
    return tasks


def task_of(tasks: list[dict[str, Any]], order_id: str) -> dict[str, Any]:
    return next(t for t in tasks if any(m["order_id"] == order_id for m in t["members"]))
