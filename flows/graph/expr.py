"""Conditions and mappings of v2 blueprints, in CEL (Common Expression Language).

Why CEL: it is a maintained, side-effect-free language made for exactly this (policy conditions over
JSON-like documents), it cannot call Python, loop forever or touch I/O, and its parser reports the
column of a syntax error. We use the Rust implementation (``common-expression-language``): it compiles
once at load and lists the identifiers an expression references, which is how an unknown top-level
name is rejected *at load*, not when an order first reaches the node. Never ``eval``.

Every expression sees the same small set of top-level names (``NAMES``); an expression naming anything
else is a load error. ``data`` is the order's document, ``now`` the event time (epoch seconds) handed to
the engine — never a clock read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import cel

from hub.errors import ConfigError

__all__ = ["NAMES", "Expr", "ExprError", "compile_expr", "compile_mapping"]

#: The top-level names an expression may reference, and what each one is.
NAMES: dict[str, str] = {
    "data": "the order document (intake fields plus everything saved by earlier nodes)",
    "now": "the time of the event being applied, epoch seconds",
    "order_id": "the order's id",
    "result": "the answer of the call being completed (call nodes)",
    "fields": "the submitted fields (user nodes)",
    "user": "the submitter: {id, team} (user nodes; G1 reporter identity)",
    "messages": "the correlated messages received so far (receive nodes)",
    "child": "the finished sub-flow's document (subflow nodes)",
}

# Names bound by CEL's comprehension macros (`list.all(x, …)`) are listed by Program.variables() too.
_MACRO_BINDER = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")


class ExprError(ConfigError):
    """An expression failed to compile or evaluate."""


@dataclass(frozen=True)
class Expr:
    """One compiled expression; ``names`` are the top-level names it reads (only those are passed in)."""

    source: str
    program: Any = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()

    def evaluate(self, scope: dict[str, Any]) -> Any:
        """Evaluate against ``scope``; only the referenced names are converted (CEL copies its input)."""
        try:
            return self.program.execute({n: scope.get(n) for n in self.names})
        except Exception as exc:  # the extension raises KeyError/TypeError/ValueError/RuntimeError
            raise ExprError(f"expression {self.source!r} failed: {type(exc).__name__}: {exc}") from exc

    def test(self, scope: dict[str, Any]) -> bool:
        """Evaluate a condition; anything but a boolean ``true`` is false (a typo never passes a gate)."""
        return self.evaluate(scope) is True


_CACHE: dict[str, Expr] = {}


def compile_expr(source: str) -> Expr:
    """Compile ``source``; raise ExprError for a syntax error or a name outside ``NAMES``."""
    cached = _CACHE.get(source)
    if cached is not None:
        return cached
    try:
        program = cel.compile(source)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExprError(f"syntax error in {source!r}: {first}") from exc
    binders = set(_MACRO_BINDER.findall(source))
    referenced = {v.split(".")[0] for v in program.variables()}
    unknown = sorted(referenced - binders - NAMES.keys())
    if unknown:
        raise ExprError(f"unknown name {', '.join(unknown)} in {source!r} (known: {', '.join(sorted(NAMES))})")
    expr = Expr(source=source, program=program, names=frozenset(referenced & NAMES.keys()))
    _CACHE[source] = expr
    return expr


def compile_mapping(mapping: dict[str, str]) -> dict[str, Expr]:
    """Compile a ``{field: expression}`` mapping (payloads, saved results, sub-flow input/output)."""
    return {key: compile_expr(src) for key, src in mapping.items()}


def evaluate_mapping(mapping: dict[str, Expr], scope: dict[str, Any]) -> dict[str, Any]:
    """Evaluate every entry of a compiled mapping; dotted keys are kept as they are (flat documents)."""
    return {key: expr.evaluate(scope) for key, expr in mapping.items()}
