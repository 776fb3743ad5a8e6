"""Operations-center tunables (env ``HUB_OPS_*``), kept with the operations center like the flow
engine keeps its own (flows/settings.py)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OpsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_OPS_", extra="ignore")

    eval_interval_s: float = Field(
        default=30.0, gt=0, description="how often the worker evaluates the stuck-order rules (one cycle)")
    lease_s: float = Field(
        default=120.0, gt=0,
        description="a worker's hold on the evaluation cycle: another worker evaluates only after it lapsed")
    due_soon_share: float = Field(
        default=0.8, gt=0, lt=1,
        description="an open order is 'about to be overdue' once this share of its stage's SLA has passed")
    failure_window_s: float = Field(
        default=3600.0, gt=0, description="the window of the overview's API failure rate (calls collection)")
    batch: int = Field(default=2000, ge=100, le=100_000,
                       description="open orders read and evaluated per batch (one thread hop each)")
