"""The jobs page's parameter text (the CLI's ``-p key=value``) and the inert filters of the console."""

from __future__ import annotations

import pytest

from app.console.render import ENV
from app.console.reporting import parse_params
from hub.errors import ValidationFailed


def test_params_are_key_value_lines_with_json_values() -> None:
    assert parse_params("") == {}
    assert parse_params("day=2026-04-10\n\n accept=[\"O1\", \"O2\"] \nlimit=3\nnote=a=b") == {
        "day": "2026-04-10", "accept": ["O1", "O2"], "limit": 3, "note": "a=b"}
    with pytest.raises(ValidationFailed, match="line 2"):
        parse_params("day=2026-04-10\nno-equals-sign")
    with pytest.raises(ValidationFailed):
        parse_params("=value")


def test_partner_text_is_printed_inert() -> None:
    template = ENV.from_string("{{ text | inert }}|{{ data | inert_json }}")
    out = template.render(text="失败\u202e<b>x</b>\x1b[2J", data={"e": "\u202e\x9b"})
    assert out.startswith("失败\\u202e&lt;b&gt;x&lt;/b&gt;\\x1b[2J|")  # spelled out, then HTML-escaped
    assert "\u202e" not in out and "\x9b" not in out and "\\u202e" in out and "\\u009b" in out
