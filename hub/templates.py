"""Tiny request templates: ``"{order.external_order_id}"`` style placeholders over a context dict.

Why not Jinja: templates come from YAML written by integration engineers; a placeholder is a
dotted path and nothing else, so a template can never execute code. A value that is exactly one
placeholder keeps its type (a dict stays a dict); placeholders inside longer text become text.
"""

from __future__ import annotations

import re
from typing import Any

from hub import paths

_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def render(template: Any, context: dict[str, Any]) -> Any:
    """Fill a template; a path that resolves to nothing renders as ``None`` / empty text."""
    if isinstance(template, str):
        whole = _REF.fullmatch(template)
        if whole:
            return paths.get(context, whole.group(1))
        return _REF.sub(lambda m: _text(paths.get(context, m.group(1))), template)
    if isinstance(template, dict):
        return {k: render(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context) for v in template]
    return template


def _text(value: Any) -> str:
    return "" if value is None else str(value)
