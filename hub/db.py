"""MongoDB through motor: one client per process, and every collection's indexes declared here
(``INDEXES``) so each query path is indexed — SecantusDB scans are slow, real MongoDB's too at scale.
Components add their own collections with :func:`declare_indexes` at import time.
"""

from __future__ import annotations

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import ASCENDING, IndexModel

from hub.settings import Settings

INDEXES: dict[str, list[IndexModel]] = {}


def declare_indexes(collection: str, *indexes: IndexModel) -> None:
    INDEXES.setdefault(collection, []).extend(indexes)


def connect(settings: Settings) -> AsyncIOMotorClient:
    return AsyncIOMotorClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        tz_aware=True,
        appname=settings.worker_id,
        # SecantusDB prunes its retryable-write registry with a scan on every write (a third of its CPU
        # under the flow benchmark); real MongoDB keeps retryable writes.
        retryWrites=not settings.mongo_embedded,
    )


def database(client: AsyncIOMotorClient, settings: Settings) -> AsyncIOMotorDatabase:
    return client[settings.mongo_db]


async def ensure_indexes(db: AsyncIOMotorDatabase) -> None:
    """Create every declared index (idempotent)."""
    for name, indexes in INDEXES.items():
        if indexes:
            await db[name].create_indexes(indexes)


declare_indexes(
    "intake_keys",
    IndexModel([("order_id", ASCENDING)], name="by_order"),
    IndexModel([("created_at", ASCENDING)], name="by_created"),
)
