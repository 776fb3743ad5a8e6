"""Issue 17, found by the outside probe: partner and submitter text printed by the operator CLI
(``hub orders show`` in-process through typer's CliRunner, against the real database)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.admin.terminal import json_text, visible
from app.runtime import Runtime
from flows.documents import CALLS, ORDERS
from hub.settings import Settings
from tests.integration.test_admin_api import seed_order
from tests.integration.test_orders_cli import env, hub, with_runtime  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration
CLEAR_AND_TITLE = "\x1b[2J\x1b[H\x1b]0;you have been pwned\x07"
HOSTILE = f"{CLEAR_AND_TITLE}[bold red]PAID[/bold red]\x9b31m\u202eevil"


def test_orders_show_prints_partner_text_inert(env: dict[str, str], with_runtime: Any,  # noqa: F811
                                               settings: Settings) -> None:
    """A callback's error text, a submitter's name and a blocked reason with ANSI escapes (clear
    screen, window title), a C1 CSI, a bidi override and Rich markup: printed as written, nothing a
    terminal or Rich acts on."""
    async def setup(rt: Runtime) -> None:
        await seed_order(rt, "ord-esc")
        assert rt.db is not None
        await rt.db[ORDERS].update_one({"_id": "ord-esc"}, {"$set": {
            "stages.1.submitted_by": f"field-app {HOSTILE}", "blocked_reason": f"report refused: {HOSTILE}"}})
        await rt.db[CALLS].update_one({"_id": "ord-esc-c2"}, {"$set": {"error": f"partner said: {HOSTILE}"}})

    with_runtime(setup)
    shown = hub(env, "orders", "show", "ord-esc")
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown and "\u202e" not in shown
    assert "[bold red]PAID[/bold red]" in shown  # markup shown literally, not interpreted
    assert "\\x1b[2J" in shown and "\\x9b31m" in shown and "\\u202e" in shown
    assert shown.count("PAID") >= 3  # the call's error, the stage's submitter, the blocked reason

    as_json = hub(env, "orders", "show", "ord-esc", "--json")
    assert "\x9b" not in as_json and "\u202e" not in as_json and "\x1b" not in as_json
    doc = json.loads(as_json)  # still the same values for a program
    assert HOSTILE in doc["blocked_reason"]


def test_visible_keeps_ordinary_text_and_spells_out_controls() -> None:
    assert visible("杭州某某科技　有限公司 [ok]") == "杭州某某科技　有限公司 [ok]"
    assert visible("a\x1b[31mb\nc\u200bd") == "a\\x1b[31mb\\x0ac\\u200bd"
    assert json.loads(json_text({"x": "\x9b\u202e"})) == {"x": "\x9b\u202e"}
