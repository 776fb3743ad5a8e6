"""The relay: carries out a saved document's outbox, then marks it sent.

Why after the write: a command is carried out only once the event that caused it is durable in the
order document; if the process dies between the two, the outbox sweep (flows/runtime/sweeps.py)
finds the document with its commands still unsent and sends them (the same idempotency keys, so the
delivery's claims keep a partner from seeing a call twice).

What each command becomes:

* ``send_call`` / ``send_report`` → a ``call.request`` envelope on ``{p}.out.{partner}`` (idempotency
  key ``v2:<engine id>``); a step in ``callback`` or ``poll`` mode also carries ``callback_ref`` (the
  engine's call id), ``hub_order_id`` and ``callback_url``, and ``answer`` (``sync`` | ``callback`` |
  ``poll``) tells the delivery agent whether the engine needs the synchronous answer at all.
* ``publish`` (a ``receive`` node's correlation message) → a row in ``correlations`` (key, order),
  then an ``order.message`` to every other order under the key with this message, and to this
  order with each of theirs. Correlation is in MongoDB, so it does not depend on Kafka partitions
  or workers; a message seen twice is ignored by the engine. A ``publish`` with ``withdrawn`` (a
  fusion member that left the wait) deletes the row and tells the others.
* ``start_subflow`` → an ``order.received`` for the child order (``blueprint`` and ``parent``
  headers); ``cancel_subflow`` → ``order.cancel`` to the child; ``notify_parent`` (a child
  finished) → ``subflow.finished`` to the parent with the child's data.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel

from flows.graph.model import Blueprint
from flows.runtime.translate import call_step
from hub import topics
from hub.db import declare_indexes
from hub.envelope import Envelope, TraceContext
from hub.partners import Partner
from hub.services import Services

log = logging.getLogger(__name__)
CORRELATIONS = "correlations"
declare_indexes(CORRELATIONS, IndexModel([("key", ASCENDING)], name="by_key"))


class Relay:
    def __init__(self, runtime: Services, callback_base_url: str) -> None:
        self.runtime = runtime
        self.prefix = runtime.settings.topic_prefix
        self.orders_topic = topics.orders(self.prefix)
        self.callback_base_url = callback_base_url.rstrip("/")

    @property
    def partners(self) -> dict[str, Partner]:
        return self.runtime.partners

    async def carry_out(self, doc: dict[str, Any], bp: Blueprint | None) -> list[str]:
        """Carry out every outbox entry; return the ids that were (the rest stay for the sweep)."""
        results = await asyncio.gather(*(self._one(doc, bp, c) for c in doc["outbox"]), return_exceptions=True)
        done = []
        for command, result in zip(doc["outbox"], results, strict=True):
            if isinstance(result, BaseException):
                log.warning("order %s: %s %s not carried out yet: %s", doc["_id"], command["type"], command["id"],
                            result)
            else:
                done.append(command["id"])
        return done

    async def _one(self, doc: dict[str, Any], bp: Blueprint | None, c: dict[str, Any]) -> None:
        kind = c["type"]
        if kind in ("send_call", "send_report"):
            await self._send(self._call_envelope(doc, bp, c), topics.outbound(self.prefix, c["partner"]))
        elif kind == "publish":
            await self._publish(doc, c)
        elif kind == "start_subflow":
            await self._send(self._event(doc, c["child_id"], "order.received", f"order:{c['child_id']}",
                                         dict(c.get("input") or {}),
                                         headers={"blueprint": c["blueprint"], "parent": doc["_id"]}))
        elif kind == "cancel_subflow":
            await self._send(self._event(doc, c["child_id"], "order.cancel", f"cancel:{c['child_id']}",
                                         {"reason": f"parent order {doc['_id']} stopped it", "by": "hub"}))
        elif kind == "notify_parent":
            state = doc["state"] or {}
            await self._send(self._event(doc, c["parent"], "subflow.finished", f"subflow:{doc['_id']}",
                                         {"child_id": doc["_id"], "status": c["status"],
                                          "data": {k: v for k, v in state.get("data", {}).items()}}))
        else:  # pragma: no cover - RELAYED lists exactly the kinds above
            raise ValueError(f"unknown outbox command {kind!r}")

    async def _send(self, env: Envelope, topic: str | None = None) -> None:
        await self.runtime.producer.send(topic or self.orders_topic, env)

    def _trace(self, doc: dict[str, Any]) -> TraceContext:
        raw = doc.get("trace")
        return (TraceContext.model_validate(raw) if raw else TraceContext()).child()

    def _event(self, doc: dict[str, Any], order_id: str, type_: str, key: str, payload: dict[str, Any],
               headers: dict[str, str] | None = None) -> Envelope:
        return Envelope(type=type_, source="hub", protocol="internal", correlation_id=order_id, idempotency_key=key,
                        payload=payload, headers=headers or {}, trace=self._trace(doc))

    def _call_envelope(self, doc: dict[str, Any], bp: Blueprint | None, c: dict[str, Any]) -> Envelope:
        partner = self.partners.get(c["partner"])
        protocol = partner.outbound.protocol if partner is not None and partner.outbound is not None else "rest"
        request = dict(c.get("payload") or {})
        is_report = c["type"] == "send_report"
        answer = "sync"  # how the engine learns the call's result: its answer, a callback, or polling
        if not is_report and bp is not None:
            step = call_step(bp, doc["state"] or {}, c["call_id"])
            if step is not None and step.mode in ("callback", "poll") and c.get("purpose") == "call":
                answer = step.mode
                request.update(callback_ref=c["call_id"], hub_order_id=doc["_id"],
                               callback_url=f"{self.callback_base_url}/api/v1/partners/{c['partner']}/callbacks")
        return Envelope(
            type="call.request", source="hub", protocol=protocol, correlation_id=doc["_id"],
            idempotency_key=f"v2:{c['id']}", product=doc.get("product") or None,
            scenario=doc.get("scenario") or None, trace=self._trace(doc),
            payload={"call_id": c["id"], "operation": c["operation"], "stage": c.get("node"), "round": 1,
                     "partner": c["partner"], "request": request, "kind": "report" if is_report else "call",
                     "purpose": c.get("purpose") or c.get("on"), "answer": answer},
            headers={"partner": c["partner"]})

    async def _publish(self, doc: dict[str, Any], c: dict[str, Any]) -> None:
        db = self.runtime.db
        assert db is not None
        key, me, payload = str(c["key"]), doc["_id"], dict(c.get("payload") or {})
        if c.get("withdrawn"):  # a fusion member left the wait (flows/fusion/kinds.py): take it back
            await db[CORRELATIONS].delete_one({"_id": f"{key}|{me}"})
            rest = [d["order_id"] async for d in db[CORRELATIONS].find({"key": key})]
            await asyncio.gather(*(self._send(self._event(doc, them, "order.message", f"unmsg:{key}:{me}:{them}",
                                                          {"key": key, "order_id": me, "payload": payload}))
                                   for them in rest))
            return
        await db[CORRELATIONS].update_one(
            {"_id": f"{key}|{me}"},
            {"$setOnInsert": {"key": key, "order_id": me, "payload": payload, "at": datetime.now(UTC)}},
            upsert=True)
        others = [d async for d in db[CORRELATIONS].find({"key": key}) if d["order_id"] != me]
        sends = []
        for other in others:
            them = other["order_id"]
            sends.append(self._send(self._event(doc, them, "order.message", f"msg:{key}:{me}:{them}",
                                                {"key": key, "order_id": me, "payload": payload})))
            sends.append(self._send(self._event(doc, me, "order.message", f"msg:{key}:{them}:{me}",
                                                {"key": key, "order_id": other["order_id"],
                                                 "payload": other.get("payload") or {}})))
        await asyncio.gather(*sends)
