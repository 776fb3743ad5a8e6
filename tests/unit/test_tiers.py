"""The test tiers come from the folders (tests/conftest.py), so ``pytest -m unit`` is the fast,
server-free tier by construction rather than by everyone remembering a marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SERVER_FIXTURES, tier_of

TESTS = Path(__file__).resolve().parent.parent


def test_this_unit_test_carries_the_unit_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


def test_a_unit_test_does_not_start_the_servers(request: pytest.FixtureRequest) -> None:
    assert not SERVER_FIXTURES.intersection(request.fixturenames)


@pytest.mark.parametrize(("path", "tier"), [
    (TESTS / "unit" / "test_envelope.py", "unit"),
    (TESTS / "integration" / "test_intake.py", "integration"),
    (TESTS / "connectors" / "test_conformance.py", "connectors"),
    (TESTS / "support.py", None),
])
def test_the_tier_is_the_first_folder_under_tests(path: Path, tier: str | None) -> None:
    assert tier_of(path) == tier


def test_every_tier_is_a_registered_marker(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":")[0].split("(")[0] for line in pytestconfig.getini("markers")}
    assert {"unit", "integration", "connectors", "browser"} <= registered
