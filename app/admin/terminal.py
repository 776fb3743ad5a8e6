"""Text a partner or a submitter wrote, made safe to print on an operator's terminal.

Callback results, error texts, ``submitted_by``, blocked reasons and payload values reach ``hub
orders show`` and the other CLI listings. Printed raw, an ESC sequence clears the screen, sets the
window title or rewrites what the operator sees, and Rich interprets ``[bold]…[/]`` markup in every
string it prints. So everything the hub did not write itself goes through this module:

* :func:`visible` spells control and format characters out (``\\x1b``, ``\\u202e``: C0, DEL, C1, bidi
  overrides, zero-width and line/paragraph separators) — Rich strips only a few of them, and C1
  ``\\x9b`` is a CSI to many terminals;
* :func:`cell` is a Rich ``Text`` of that (never parsed as markup);
* :func:`markup` escapes a value for interpolation into a Rich markup string;
* :func:`json_text` is ``json.dumps`` output with the characters JSON leaves raw (C1, bidi) escaped
  as ``\\uXXXX``, still valid JSON for ``--json`` consumers.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from rich.markup import escape
from rich.text import Text

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
#: characters JSON serialisation leaves raw that a terminal may still act on
_JSON_RAW = re.compile("[\u0080-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def _spell(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(value: Any) -> str:
    """``str(value)`` with every control / format character written as an escape; tabs become a space."""
    text = str(value)
    if text.isprintable():  # the common case: nothing to do (spaces and CJK text are printable)
        return text
    return "".join(" " if ch == "\t" else _spell(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch
                   for ch in text)


def cell(value: Any) -> Text:
    """A table cell Rich prints as written: escapes spelled out, brackets literal."""
    return Text(visible(value))


def markup(value: Any) -> str:
    """``value`` for an f-string printed by a Rich console with markup on."""
    return escape(visible(value))


def json_text(data: Any, **kw: Any) -> str:
    """``json.dumps(data, ensure_ascii=False, …)`` whose C1 and bidi characters are ``\\uXXXX`` escapes."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False, **kw))
