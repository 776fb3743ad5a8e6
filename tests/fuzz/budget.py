"""The budget of the hypothesis property tests in tests/fuzz/: bounded and reproducible.

Why fixed: these run in every default test run (the unit tier), so each property gets a bounded
number of examples and no deadline (a shared 2-core machine makes per-example timing noise, and
performance is measured in bench/, never asserted here); ``database=None`` so no ``.hypothesis/``
is left in the checkout.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def budget(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
