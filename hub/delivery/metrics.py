"""Delivery latency (Prometheus). Attempt and failure counters are declared in ``hub.metrics``."""

from __future__ import annotations

from prometheus_client import Histogram

DELIVERY_LATENCY = Histogram(
    "hub_delivery_attempt_seconds", "Duration of one outbound call attempt", ["partner"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
