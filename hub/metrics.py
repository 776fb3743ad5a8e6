"""Prometheus metrics (prometheus-client), declared once here so names stay consistent."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INTAKE_REQUESTS = Counter(
    "hub_intake_requests_total",
    "Inbound deliveries by partner, protocol and outcome (accepted, duplicate, rejected_*, unavailable)",
    ["partner", "protocol", "outcome"],
)
INTAKE_LATENCY = Histogram(
    "hub_intake_latency_seconds",
    "Time from request received to answer sent, for accepted deliveries",
    ["partner", "protocol"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ENVELOPES_OUT = Counter(
    "hub_envelopes_produced_total", "Envelopes written to Kafka by partner (the envelope's source) and topic",
    ["partner", "topic"],
)

# --- flow, delivery and operations (issue 5; incremented where the event happens) ------------------
ENVELOPES_IN = Counter(
    "hub_envelopes_consumed_total", "Envelopes consumed by an agent, by partner and topic", ["partner", "topic"]
)
DELIVERY_ATTEMPTS = Counter(
    "hub_delivery_attempts_total",
    "Outbound calls to partners, one per attempt, by outcome (ok, error, timeout, rejected)",
    ["partner", "operation", "outcome"],
)
DELIVERY_FAILURES = Counter(
    "hub_delivery_failures_total",
    "Outbound calls that gave up (attempts exhausted or permanent error) and were dead-lettered",
    ["partner", "operation"],
)
DELIVERY_AMBIGUOUS = Counter(
    "hub_delivery_ambiguous_total",
    "Deliveries taken over from an owner that died mid-call: the partner may have seen the call twice",
    ["partner"],
)
DEAD_LETTERS = Counter(
    "hub_dead_letters_total", "Dead letters written, by source topic and error class", ["topic", "error_class"]
)
DLQ_ACTIONS = Counter(
    "hub_dlq_actions_total",
    "Operator actions on dead letters (replay, discard) by result (ok, refused, failed)",
    ["action", "result"],
)
STAGE_TRANSITIONS = Counter(
    "hub_stage_transitions_total", "Order stage transitions", ["product", "stage", "outcome"]
)
# Gauges below are refreshed from MongoDB / Kafka when /metrics is scraped (app/admin/gauges.py).
DEAD_LETTERS_PENDING = Gauge(
    "hub_dead_letters_pending", "Dead letters not yet replayed or discarded, by source topic", ["topic"]
)
ORDERS_IN_FLIGHT = Gauge(
    "hub_orders_in_flight", "Orders in flight or waiting, by product and current stage", ["product", "stage"]
)
CONSUMER_LAG = Gauge(
    "hub_consumer_lag", "Records not yet consumed, by consumer group and topic", ["group", "topic"]
)
DEPENDENCY_UP = Gauge(
    "hub_dependency_up",
    "1 while a dependency answers, 0 while its circuit is open and callers fail fast (hub/db.py DbHealth)",
    ["dependency"],
)

FLOW_EVENT_SECONDS = Histogram(
    "hub_flow_event_seconds",
    "Time the flow engine spends on one order event, by phase: apply (load, engine, write) and send (relay)",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MONGO_COMMANDS = Counter(
    "hub_mongo_commands_total", "MongoDB commands this process sent, by collection and command (hub/db.py)",
    ["collection", "command"],
)
MONGO_DOCUMENTS = Counter(
    "hub_mongo_command_documents_total",
    "Documents (inserts, update/replace statements, deletes) in this process's MongoDB write commands",
    ["collection", "command"],
)
MONGO_SECONDS = Counter(
    "hub_mongo_command_seconds_total",
    "Round-trip seconds of this process's MongoDB commands (server queueing included)",
    ["collection", "command"],
)
DELIVERY_LATENCY = Histogram(
    "hub_delivery_attempt_seconds", "Duration of one outbound call attempt", ["partner"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_BODY_TIMEOUTS = Counter(
    "hub_http_body_timeouts_total",
    "Requests answered 408 because their body did not arrive within HUB_HTTP_BODY_TIMEOUT_S, by route",
    ["route"],
)
