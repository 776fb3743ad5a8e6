"""What the wrappers add to an :class:`~connectors.base.Outcome` on its way out of the chain.

The chain's result is still one ``Outcome`` (the Sink contract), so a wrapper's findings travel in
``Outcome.details`` under the keys below; read them with these helpers, never by key, so the keys
stay private to this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from connectors.base import Outcome
from hub.deadletter import Attempt

_ATTEMPTS = "delivery.attempts"
_DEAD_LETTER = "delivery.dead_letter_id"
_RECORDED = "delivery.recorded"


def with_details(outcome: Outcome, **found: Any) -> Outcome:
    """A copy of ``outcome`` with ``found`` added to its details (Outcome is frozen)."""
    keys = {"attempts": _ATTEMPTS, "dead_letter_id": _DEAD_LETTER, "recorded": _RECORDED}
    return dataclasses.replace(outcome, details={**outcome.details, **{keys[k]: v for k, v in found.items()}})


def attempts(outcome: Outcome) -> list[Attempt]:
    """Every attempt the Retry wrapper made (empty when none was made, e.g. a recorded delivery)."""
    return list(outcome.details.get(_ATTEMPTS, []))


def dead_letter_id(outcome: Outcome) -> str | None:
    """The dead letter the DeadLetter wrapper wrote for this failure, if any."""
    value = outcome.details.get(_DEAD_LETTER)
    return str(value) if value is not None else None


def recorded(outcome: Outcome) -> dict[str, Any] | None:
    """The ``deliveries`` record when the Idempotency wrapper found this delivery already made."""
    value = outcome.details.get(_RECORDED)
    return value if isinstance(value, dict) else None
