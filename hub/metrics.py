"""Prometheus metrics (prometheus-client), declared once here so names stay consistent."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
    "hub_envelopes_produced_total", "Envelopes written to Kafka by topic", ["topic"]
)
