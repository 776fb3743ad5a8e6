"""The partner call's span: one per attempt, at the bottom of the chain (just above the sink).

Why a wrapper: every sink (REST, SOAP, SFTP, AMQP) sends the envelope's ``traceparent`` to the
partner; wrapped, it sends *this attempt's* span id, so a partner that traces too links its work
to the attempt, and the retry chain's backoff shows as the gaps between the attempt spans.
The span's service is the partner's name, its operation the call's (``payload.operation``);
the outcome is ``ok``, ``retryable`` or ``rejected`` — never the partner's answer (it can quote
the customer).
"""

from __future__ import annotations

from typing import ClassVar

from connectors.base import Outcome, Sink
from connectors.delivery.wrapper import Wrapper
from hub import tracing
from hub.envelope import Envelope


class Traced(Wrapper):
    name: ClassVar[str] = "traced"

    def __init__(self, next: Sink, service: str) -> None:
        super().__init__(next)
        self.service = service

    async def deliver(self, envelope: Envelope) -> Outcome:
        operation = str(envelope.payload.get("operation") or envelope.type)
        parent = tracing.running(envelope.trace)  # inside the delivery's span: that span
        with tracing.hop(parent, self.service, operation, envelope.correlation_id, kind="client") as span:
            outcome = await self.next.deliver(envelope.model_copy(update={"trace": span.trace}))
            if not outcome.ok:
                span.fail("retryable" if outcome.retryable else "rejected")
            return outcome
