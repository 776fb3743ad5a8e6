"""Issue 17, found by the outside probe: leaks and sanitiser gaps, tested on the real functions."""

from __future__ import annotations

import pytest

from connectors.sftp.sink import UnsafePath, sanitise
from hub.errors import ConfigError
from hub.settings import load_settings

TOKEN = "s3cr3t-operator-token-do-not-print"


def test_an_invalid_admin_tokens_variable_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error printed every token of HUB_ADMIN_TOKENS (and pydantic's chained error quoted them)."""
    monkeypatch.setenv("HUB_ADMIN_TOKENS", f"alice:operator:{TOKEN},bob:superuser:{TOKEN}-2")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value) + "".join(info.value.problems)
    assert "HUB_ADMIN_TOKENS" in text and TOKEN not in text
    cause = info.value.__cause__ or info.value.__context__
    assert cause is None or TOKEN not in str(cause)


@pytest.mark.parametrize("value", ["ORD-1\n", "ORD-1\n\n", "\nORD-1", "a/b", "..", "ORD 1"])
def test_the_sftp_path_sanitiser_refuses_a_trailing_newline(value: str) -> None:
    """``$`` matched before a final newline: ``ORD-1\\n`` became part of a remote file name."""
    with pytest.raises(UnsafePath):
        sanitise("order_id", value)


def test_the_sftp_path_sanitiser_keeps_ordinary_values() -> None:
    assert sanitise("order_id", "ORD-20261201-杭州.v2@x+y") == "ORD-20261201-杭州.v2@x+y"
