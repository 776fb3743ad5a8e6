"""The journal of events received over HTTP (callbacks, manual submissions, retries, cancels).

Why a journal: the embedded broker keeps topics in memory, so an event it held is gone after it
restarts; the sweep re-emits the journaled events of open orders then (flows/runtime/sweeps.py), and
the engine ignores the ones it already applied. With an external Kafka (``HUB_EVENT_JOURNAL=auto``)
the journal keeps only the idempotency key — the cluster is the event's one durable copy
(docs/flows.md).
"""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from hub.db import declare_indexes

EVENTS = "order_events"
declare_indexes(EVENTS, IndexModel([("order_id", ASCENDING)], name="by_order"))
