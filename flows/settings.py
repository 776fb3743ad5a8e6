"""Flow-engine tunables (env ``HUB_FLOW_*``); kept apart from hub.settings so the engine's knobs
live with the engine. Defaults suit production; tests shorten the timers."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FlowSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_FLOW_", extra="ignore")

    recovery_interval_s: float = Field(
        default=5.0, gt=0,
        description="how often the worker checks for a broker that lost its topics (then re-sends what is open)")
    intake_recovery_hours: float = Field(
        default=24.0, gt=0, description="at start, re-send orders accepted this recently that the engine never saw"
    )
    engine_concurrency: int = Field(default=64, ge=1, le=4096, description="orders processed at once")
    callback_base_url: str | None = Field(
        default=None, description="URL partners call back on; default the public URL (HUB_PUBLIC_URL)"
    )
    timer_sweep_s: float = Field(default=1.0, gt=0, description="how often due durable timers are looked for")
    outbox_sweep_s: float = Field(default=2.0, gt=0, description="how often unsent outboxes are looked for")
    outbox_stale_s: float = Field(
        default=10.0, gt=0, description="an outbox unsent this long after its write belongs to the sweep (a crash)")
    lease_s: float = Field(
        default=10.0, gt=0, description="a worker's hold on an order's due timers / stale outbox (takeover after)")
