"""The process-wide runtime: settings, partners, the Kafka producer, MongoDB, and the routes.

One ``Runtime`` per hub process; the web app and the Faust worker share it. ``start`` never fails
because a dependency is down: the HTTP server still comes up, answers 503 on intake and reports
the dependency on ``/readyz`` — an operator sees what is wrong instead of a crash loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from app import plugins
from connectors.registry import registry
from hub import db as hubdb
from hub import topics, tracing
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.intake import Accepted, Intake
from hub.kafka import BrokerWatch, EnvelopeProducer, ensure_topics, limit_client_log_rate
from hub.partners import Partner, load_partners
from hub.services import ServiceSlots
from hub.settings import Settings
from hub.stopping import cancel_until_done

log = logging.getLogger(__name__)


class GuardedIntake(Intake):
    """The intake behind the database circuit (``hub/db.py`` DbHealth): with MongoDB known down a
    delivery is refused at once (503, nothing written), instead of after a server-selection timeout."""

    def __init__(self, db: AsyncIOMotorDatabase, producer: EnvelopeProducer, health: hubdb.DbHealth) -> None:
        super().__init__(db, producer)
        self.health = health

    async def emit(self, topic: str, envelope: Envelope) -> Accepted:
        async with self.health.guard():
            return await super().emit(topic, envelope)

    async def record_many(self, topic: str, envelopes: Any, chunk: int = 1000) -> None:
        try:
            await super().record_many(topic, envelopes, chunk)
        except RetryableError as exc:
            self.health.observe(exc)
            raise


class Runtime(ServiceSlots):
    def __init__(self, settings: Settings, partners: dict[str, Partner] | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.partners = partners if partners is not None else load_partners(settings.config_dir)
        self.producer = EnvelopeProducer(settings)
        # topics outside topic_names() the worker needs back after a broker wipe (faust's own), → partitions
        self.extra_topics: dict[str, int] = {}
        self.broker = BrokerWatch(settings, self.producer, self.wanted_topics)
        self._broker_task: asyncio.Task[None] | None = None
        self.mongo: AsyncIOMotorClient | None = None
        self.db: AsyncIOMotorDatabase | None = None
        self.tracing: tracing.Tracing | None = None
        self._previous_tracing = tracing.installed()
        # intake's own client: short server selection, behind a circuit (partners wait for its answers)
        self.intake_mongo: AsyncIOMotorClient | None = None
        self.db_health: hubdb.DbHealth | None = None
        self.intake: Intake | None = None
        # process-wide tables connectors share (HTTP endpoint tables by connector name)
        self.connector_tables: dict[str, dict[str, Any]] = {}
        self.routes: Any = None  # routes.manager.RouteManager once start_routes ran
        self._topics_made: set[str] = set()

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        # what this process can build is fixed now: a late registration raises. On a thread: the
        # first freeze imports every connector package (~300 ms CPU), which must not stall the loop
        await asyncio.to_thread(registry.freeze)
        limit_client_log_rate()  # a broker outage must not flood the log (hub/kafka.py RateLimitFilter)
        self.mongo = hubdb.connect(self.settings)
        self.db = hubdb.database(self.mongo, self.settings)
        self.intake_mongo = hubdb.connect(self.settings, server_selection_ms=hubdb.INTAKE_SERVER_SELECTION_MS)
        # call-chain spans (hub/tracing.py): summarised in MongoDB always, OTLP when HUB_OTLP_ENDPOINT is set
        if self.tracing is None and self.settings.tracing:
            self.tracing = tracing.Tracing.build(endpoint=self.settings.otlp_endpoint, service_name="hub",
                                                 db=self.db)
            self._previous_tracing = tracing.install(self.tracing)
        self.db_health = hubdb.DbHealth(self.intake_mongo)
        try:
            await asyncio.wait_for(hubdb.ensure_indexes(self.db), self.settings.mongo_timeout_ms / 1000 + 1)
        except Exception as exc:
            log.error("MongoDB not reachable at start (%s); intake will answer 503 until it is", exc)
            self.db_health.mark_down(exc)
        try:
            await self.producer.start()
            await ensure_topics(self.settings, self.topic_names())
        except Exception as exc:
            log.error("Kafka not reachable at start (%s); intake will answer 503 until it is", exc)
        if self._broker_task is None:  # notices an outage or a wiped broker and re-creates the topics
            self._broker_task = asyncio.get_running_loop().create_task(self.broker.run(), name="broker-watch")
        self.intake = GuardedIntake(hubdb.database(self.intake_mongo, self.settings), self.producer, self.db_health)
        # admission checks from plugins (e.g. flows: a blueprint exists), so hub/ never imports flows/
        self.intake.configure(admit=plugins.admission(self), max_depth=self.settings.intake_max_depth,
                             journal=self.settings.journal_events)

    async def stop(self) -> None:
        if self._broker_task is not None:
            await cancel_until_done(self._broker_task)  # its sleep outlived a lost cancel once (a 300 s hang)
            self._broker_task = None
        if self.routes is not None:
            await self.routes.stop()
            self.routes = None
        await self.producer.stop()
        if self.tracing is not None:
            await self.tracing.close()  # the last spans, before the database client closes
            if tracing.installed() is self.tracing:
                tracing.install(self._previous_tracing)
            self.tracing = None
        if self.db_health is not None:
            await self.db_health.close()
        if self.intake_mongo is not None:
            self.intake_mongo.close()
        if self.mongo is not None:
            self.mongo.close()

    def topic_names(self) -> list[str]:
        p = self.settings.topic_prefix
        names = [topics.orders(p), topics.dead_letter(topics.orders(p))]
        for name in self.partners:
            names += [topics.inbound(p, name), topics.outbound(p, name)]
            if self.partners[name].outbound is not None:  # delivery dead letters (app/delivery.py)
                names.append(topics.dead_letter(topics.outbound(p, name)))
        return names

    def wanted_topics(self) -> dict[str, int]:
        """Every topic this process needs, with its partition count (what a wiped broker gets back)."""
        names = [*self.topic_names(), *self._topics_made]
        return {**{name: self.settings.topic_partitions for name in names}, **self.extra_topics}

    # --- intake ----------------------------------------------------------------------------
    async def start_routes(self, *, watch: bool = True) -> None:
        """Start every route (``config/routes/*.yaml`` plus REST routes implied by partner files);
        ``watch``: reload changed route files while running (see routes/manager.py)."""
        from routes.manager import RouteManager  # late: routes import every connector package

        if self.routes is None:
            self.routes = RouteManager(self)
            await self.routes.start(watch=watch)

    async def ensure_topic(self, name: str) -> None:
        if name in self._topics_made:
            return
        try:
            await ensure_topics(self.settings, [name])
            self._topics_made.add(name)
        except Exception as exc:
            log.warning("could not create topic %s yet: %s", name, exc)

    # --- health ----------------------------------------------------------------------------
    async def readiness(self) -> dict[str, dict[str, Any]]:
        async def mongo_ok() -> bool:
            if self.db_health is None:
                return False
            if not self.db_health.up:  # circuit open: its probe pings in the background, answer at once
                return False
            return await self.db_health.ping(timeout=2)

        kafka, mongo = await asyncio.gather(self.broker.check(), mongo_ok())
        checks = {
            "kafka": {"ok": kafka, "url": self.settings.kafka_bootstrap, **self.broker.describe()},
            "mongo": {"ok": mongo, "url": self.settings.mongo_uri.split("@")[-1],
                      **(self.db_health.describe() if self.db_health is not None else {})},
        }
        if self.routes is not None:
            checks["routes"] = self.routes.readiness()
        return checks
