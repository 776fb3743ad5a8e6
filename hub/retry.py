"""How the hub calls a partner: protocol, connection (validated by the sink's own model), retry
policy and the partner's success rule. Lives in ``config/partners/<name>.yaml`` under ``outbound:``.

The success rule is configuration, not code, because each partner says "accepted" differently:
ESOP ``checkResult=1`` (error text in ``parameterValue``), 一编 HTTP 201, 资管 ``code:"0"`` (``msg``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub import paths

if TYPE_CHECKING:  # resolved by hub.partners (Outbound.model_rebuild) to avoid an import cycle
    from hub.partners import ApiKeyAuth


class CircuitBreakerPolicy(BaseModel):
    """``policy.circuit``: stop calling a partner after ``failures`` consecutive retryable failures,
    fail fast (retryable) for ``cooldown_s``, then let one trial call through
    (``connectors/delivery/circuit.py``). Unset: no breaker — every attempt calls the partner."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=5, ge=1, le=1000, description="consecutive retryable failures that open it")
    cooldown_s: float = Field(default=30.0, ge=0, le=3600, description="open this long before a trial call")


class RetryPolicy(BaseModel):
    """Per-partner delivery policy: timeout, exponential backoff with jitter, attempts, concurrency,
    and an optional circuit breaker."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=10.0, gt=0, le=300, description="one attempt, connect + answer")
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_initial_s: float = Field(default=0.5, ge=0, le=60)
    backoff_max_s: float = Field(default=30.0, ge=0, le=3600)
    backoff_multiplier: float = Field(default=2.0, ge=1, le=10)
    jitter_s: float = Field(default=0.2, ge=0, le=60)
    concurrency: int = Field(default=16, ge=1, le=1024, description="calls in flight to this partner")
    circuit: CircuitBreakerPolicy | None = Field(default=None, description="optional circuit breaker")

    @model_validator(mode="after")
    def _order(self) -> RetryPolicy:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class SuccessRule(BaseModel):
    """When a partner's answer means "done". All given conditions must hold."""

    model_config = ConfigDict(extra="forbid")

    http_status: list[int] | None = Field(default=None, examples=[[201]], description="accepted HTTP statuses")
    field: str | None = Field(default=None, examples=["checkResult", "code"], description="dotted path in the answer")
    equals: str | None = Field(default=None, examples=["1", "0"])
    error_field: str | None = Field(default=None, examples=["parameterValue", "msg"])
    reject_retryable: bool = Field(default=False, description="retry a business rejection (else dead-letter now)")

    @model_validator(mode="after")
    def _pair(self) -> SuccessRule:
        if (self.field is None) != (self.equals is None):
            raise ValueError("field and equals go together")
        return self

    def judge(self, status: int | None, body: Any) -> tuple[bool, str | None]:
        """(ok, error text) for an answer that arrived; transport failures are judged by the sink."""
        if self.http_status is not None and status is not None and status not in self.http_status:
            return False, f"HTTP {status}" + (f": {paths.get(body, self.error_field)}" if self.error_field else "")
        if self.field is not None:
            value = paths.get(body, self.field)
            if value is None or str(value) != self.equals:
                detail = paths.get(body, self.error_field) if self.error_field else None
                return False, f"{self.field}={value!r}" + (f": {detail}" if detail else "")
        return True, None


class Outbound(BaseModel):
    """``outbound:`` of a partner file."""

    model_config = ConfigDict(extra="forbid")

    protocol: str = Field(pattern=r"^[a-z][a-z0-9_]*$", examples=["rest", "soap"], description="sink name")
    policy: RetryPolicy = Field(default_factory=RetryPolicy)
    config: dict[str, Any] = Field(
        default_factory=dict, description="validated against the sink's config model (connectors registry)"
    )
    callback_auth: ApiKeyAuth | None = Field(
        default=None, description="credentials the partner presents on POST /api/v1/partners/{partner}/callbacks"
    )
