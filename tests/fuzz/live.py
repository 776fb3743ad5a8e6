"""Schemathesis against a live hub: every operation of the served OpenAPI document, a bounded number
of generated requests each, every answer checked against the document.

Why a helper module: the budget, the credentials, the checks and the report are one thing — the
test (``test_schemathesis.py``) only starts the hub and asserts there were no failures; the numbers
it prints (operations × examples, failures, wall time) are the measurement of issue 17 §6.

Schemathesis is synchronous (``requests``): :func:`fuzz` runs in a thread while the hub serves on
the test's event loop, so the loop check watches the hub's handlers through the whole run.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis.checks import CheckContext
from schemathesis.core.failures import Failure
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.requests import REQUESTS_TRANSPORT


@REQUESTS_TRANSPORT.serializer("application/xml", "text/xml")  # one family: both, or the first wins
def raw_xml(ctx: Any, value: Any) -> dict[str, Any]:
    """A ``text/xml`` body (the SOAP endpoint's: ``type: string``) is sent as the text itself. Why:
    schemathesis's XML serializer wraps a string in ``<data>…</data>`` and escapes it, so neither the
    document's example envelope nor generated junk would reach the parser as written."""
    return {"data": value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value}


#: credentials of the shipped dev config (config/partners/esop.yaml, config/hub.yaml)
PARTNER = "esop"
HEADERS = {"X-Api-Key": "dev-esop-key-0001", "Authorization": "Bearer dev-operator-token-0001"}
REQUEST_TIMEOUT_S = 10.0  # "no hang": a request unanswered this long is a failure


class ServerError(Failure):
    """A 5xx the document does not allow (a SOAP fault is SOAP 1.1's 500; ``/readyz`` may say 503)."""

    kind_title = "Server error"


def no_server_error(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """5xx only where the protocol or the document makes it an answer rather than a crash: a SOAP
    fault (HTTP 500, ``text/xml``, a ``Fault`` element) and the documented 502/503 (checked for
    conformance by the other checks). A 500 anywhere else is a bug."""
    status = response.status_code
    if status < 500:
        return None
    if case.operation.path.startswith("/soap/") and status == 500 and b"Fault>" in (response.content or b""):
        return None
    if status != 500 and str(status) in case.operation.definition.raw.get("responses", {}):
        return None
    raise ServerError(operation=case.operation.label, title=f"HTTP {status}",
                      message=(response.content or b"")[:300].decode("utf-8", "replace"))


#: ``ignored_auth``: a 2xx to a request with credentials is sent again without them and with wrong
#: ones, and must then be refused (401/403) — the document's security requirements are enforced
CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, ignored_auth]


@dataclass
class Report:
    examples: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (operation, check title) → first example
    wall_s: float = 0.0

    def table(self) -> str:
        lines = [f"{'operation':<52} {'examples':>8}  statuses"]
        for label in sorted(self.examples):
            statuses = ", ".join(f"{s}×{n}" for s, n in sorted(self.statuses.get(label, Counter()).items()))
            lines.append(f"{label:<52} {self.examples[label]:>8}  {statuses}")
        lines.append(f"{len(self.examples)} operations × {sum(self.examples.values())} examples, "
                     f"{len(self.failures)} distinct failures, {self.wall_s:.1f} s")
        lines += [f"FAILED {op}: {title}\n{example}" for (op, title), example in sorted(self.failures.items())]
        return "\n".join(lines)


def fuzz(document: dict[str, Any], base_url: str, *, max_examples: int, seed: int = 17) -> Report:
    """Every operation of ``document``, ``max_examples`` generated requests each (positive and
    negative data), against ``base_url``; nothing stops at the first failure."""
    config = schemathesis.Config.from_dict({"generation": {"mode": "all"}})
    schema = schemathesis.openapi.from_dict(document, config=config)
    report = Report()
    started = time.perf_counter()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]  # Err only for an invalid document
            for explicit in schema.get_strategies_from_examples(operation):  # the document's own examples
                _fuzz_operation(operation, explicit, base_url, session, report, 1, seed)
            _fuzz_operation(operation, operation.as_strategy(), base_url, session, report, max_examples, seed)
    report.wall_s = time.perf_counter() - started
    return report


def _fuzz_operation(operation: Any, strategy: Any, base_url: str, session: requests.Session, report: Report,
                    max_examples: int, seed: int) -> None:
    label = operation.label

    @hypothesis.seed(seed)
    @hypothesis.settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                         report_multiple_bugs=False)
    @given(case=strategy)
    def run(case: Any) -> None:
        if "partner" in (case.path_parameters or {}):
            case.path_parameters["partner"] = PARTNER  # a known partner: past the 401 into the real checks
        report.examples[label] += 1
        try:
            response = case.call(base_url=base_url, session=session, headers=HEADERS, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:  # a hang (timeout) or a dropped connection
            report.failures.setdefault((label, type(exc).__name__), case.as_curl_command())
            return
        report.statuses.setdefault(label, Counter())[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=HEADERS)
        except BaseException as exc:  # a Failure or a FailureGroup: record, keep going
            failures = getattr(exc, "exceptions", None) or [exc]
            for failure in failures:
                title = getattr(failure, "title", type(failure).__name__)
                report.failures.setdefault(
                    (label, str(title)),
                    f"{case.as_curl_command()}\n  → {response.status_code} "
                    f"{(response.headers.get('content-type') or [''])[0]}: "
                    f"{response.content[:300].decode('utf-8', 'replace')}\n  {failure}"[:2000])  # XLSX is binary

    run()
