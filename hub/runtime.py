"""The process-wide runtime: settings, partners, the Kafka producer, MongoDB, and the sources.

One ``Runtime`` per hub process; the web app and the Faust worker share it. ``start`` never fails
because a dependency is down: the HTTP server still comes up, answers 503 on intake and reports
the dependency on ``/readyz`` — an operator sees what is wrong instead of a crash loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from connectors.base import Emit, Source
from connectors.rest.config import RestSourceConfig
from connectors.rest.source import ENDPOINTS, RestOrderSource
from hub import db as hubdb
from hub import topics
from hub.envelope import Envelope
from hub.intake import Accepted, Intake
from hub.kafka import EnvelopeProducer, ensure_topics
from hub.metrics import ENVELOPES_OUT
from hub.partners import Partner, load_partners
from hub.settings import Settings

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, partners: dict[str, Partner] | None = None) -> None:
        self.settings = settings
        self.partners = partners if partners is not None else load_partners(settings.config_dir)
        self.producer = EnvelopeProducer(settings)
        self.mongo: AsyncIOMotorClient | None = None
        self.db: AsyncIOMotorDatabase | None = None
        self.intake: Intake | None = None
        self.sources: list[Source] = []
        self.extras: dict[str, Any] = {}

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.mongo = hubdb.connect(self.settings)
        self.db = hubdb.database(self.mongo, self.settings)
        try:
            await asyncio.wait_for(hubdb.ensure_indexes(self.db), self.settings.mongo_timeout_ms / 1000 + 1)
        except Exception as exc:
            log.error("MongoDB not reachable at start (%s); intake will answer 503 until it is", exc)
        try:
            await self.producer.start()
            await ensure_topics(self.settings, self.topic_names())
        except Exception as exc:
            log.error("Kafka not reachable at start (%s); intake will answer 503 until it is", exc)
        self.intake = Intake(self.db, self.producer)

    async def stop(self) -> None:
        for source in reversed(self.sources):
            await source.stop()
        self.sources.clear()
        await self.producer.stop()
        if self.mongo is not None:
            self.mongo.close()

    def topic_names(self) -> list[str]:
        p = self.settings.topic_prefix
        names = [topics.orders(p)]
        for name in self.partners:
            names += [topics.inbound(p, name), topics.outbound(p, name)]
        return names

    # --- intake ----------------------------------------------------------------------------
    def emitter(self, topic: str) -> Emit:
        """The ``emit`` a source gets: idempotent, acks=all, bound to the source's topic."""

        async def emit(envelope: Envelope) -> Accepted:
            assert self.intake is not None, "runtime not started"
            accepted = await self.intake.emit(topic, envelope)
            if not accepted.duplicate:
                ENVELOPES_OUT.labels(topic).inc()
            return accepted

        return emit

    async def start_rest_sources(self, app: web.Application) -> None:
        """One REST intake per partner that declares ``inbound.rest``."""
        for partner in self.partners.values():
            rest = partner.inbound.rest if partner.inbound else None
            if rest is None or not rest.enabled:
                continue
            config = RestSourceConfig(
                partner=partner.name,
                auth=rest.auth,
                order_schema=partner.inbound.order_schema,
                max_body_bytes=rest.max_body_bytes or self.settings.intake_max_body_bytes,
                sensitive_fields=partner.sensitive_fields,
            )
            source = RestOrderSource(config, app[ENDPOINTS])
            await source.start(self.emitter(topics.inbound(self.settings.topic_prefix, partner.name)))
            self.sources.append(source)

    # --- health ----------------------------------------------------------------------------
    async def readiness(self) -> dict[str, dict[str, Any]]:
        async def mongo_ok() -> bool:
            if self.db is None:
                return False
            try:
                await asyncio.wait_for(self.db.command("ping"), 2)
                return True
            except Exception:
                return False

        kafka, mongo = await asyncio.gather(self.producer.ping(), mongo_ok())
        return {
            "kafka": {"ok": kafka, "url": self.settings.kafka_bootstrap},
            "mongo": {"ok": mongo, "url": self.settings.mongo_uri.split("@")[-1]},
        }
