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

__all__ = ["NAMES", "Expr", "ExprError", "compile_expr", "compile_mapping", "copy_json", "evaluate_mapping"]

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
    "hold": "the suspend or resume being applied: {reason, by, at} (on_suspend / on_resume notices)",
}

# `name.a.b` chains (a trailing `.f(` is a method call, not a field); see Expr.evaluate.
_PATH = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)(\s*\()?")

_CHAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*")

# Names bound by CEL's comprehension macros (`list.all(x, …)`) are listed by Program.variables() too.
_MACRO_BINDER = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")


class ExprError(ConfigError):
    """An expression failed to compile or evaluate."""


@dataclass(frozen=True)
class Expr:
    """One compiled expression; ``names`` are the top-level names it reads, ``paths`` the field chains.

    Why the paths: CEL converts its whole input into its own values on every evaluation (≈ 7 µs per
    string), and ``data`` — the order document — grows with every node. Passing only the fields an
    expression names (``data.a.b`` → ``{"data": {"a": {"b": …}}}``, a missing field stays missing so
    ``has()`` still works) makes an evaluation cost what the expression reads, not what the order holds.
    A name used bare (``size(data)``, ``data["k"]``) is passed whole.
    """

    source: str
    program: Any = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()
    paths: tuple[tuple[str, ...], ...] = ()
    #: set when the expression is only a field chain (``order_id``, ``result.code``): read directly,
    #: with CEL's own outcome (the value, or an error for a missing key)
    lookup: tuple[str, ...] | None = None

    def evaluate(self, scope: dict[str, Any]) -> Any:
        """Evaluate against ``scope``, passing only what the expression reads."""
        if self.lookup is not None:  # a bare field chain (most payload mappings): no CEL round trip
            value: Any = scope
            for part in self.lookup:
                if not isinstance(value, dict) or part not in value:
                    raise ExprError(f"expression {self.source!r} failed: no such key: {part}")
                value = value[part]
            # CEL hands back new values; so does this: a payload or saved field never aliases the state
            return copy_json(value) if isinstance(value, dict | list) else value
        try:
            return self.program.execute(_prune(scope, self.names, self.paths))
        except Exception as exc:  # the extension raises KeyError/TypeError/ValueError/RuntimeError
            raise ExprError(f"expression {self.source!r} failed: {type(exc).__name__}: {exc}") from exc

    def test(self, scope: dict[str, Any]) -> bool:
        """Evaluate a condition; anything but a boolean ``true`` is false (a typo never passes a gate)."""
        return self.evaluate(scope) is True


def _paths(source: str, names: frozenset[str]) -> tuple[tuple[str, ...], ...]:
    """The shortest set of field chains covering every use of ``names`` (a bare use → the name alone)."""
    found: set[tuple[str, ...]] = set()
    for m in _PATH.finditer(source):
        if m.group(1) not in names or (m.start() > 0 and source[m.start() - 1] == "."):
            continue
        chain = [part.strip() for part in m.group(2).split(".")[1:]]
        if m.group(3) and chain:  # data.name.startsWith( → the method is not a field
            chain.pop()
        found.add((m.group(1), *chain))
    kept = [p for p in found if not any(q != p and p[: len(q)] == q for q in found)]
    return tuple(sorted(kept))


def _prune(scope: dict[str, Any], names: frozenset[str], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        if path[0] not in scope:
            continue
        src: Any = scope[path[0]]
        if len(path) == 1 or not isinstance(src, dict):
            out[path[0]] = src
            continue
        dst = out.setdefault(path[0], {})
        for i, part in enumerate(path[1:], start=2):
            if part not in src:
                break
            if i == len(path) or not isinstance(src[part], dict):
                dst[part] = src[part]
                break
            src, dst = src[part], dst.setdefault(part, {})
    for name in names:  # a name in a position the regex did not see (should not happen): whole
        if name not in out and name in scope and not any(p[0] == name for p in paths):
            out[name] = scope[name]
    return out


def copy_json(value: Any) -> Any:
    """Deep copy of a JSON value (4× faster than a json round trip)."""
    kind = type(value)
    if kind is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if kind is list:
        return [copy_json(v) for v in value]
    return value


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
    names = frozenset(referenced & NAMES.keys())
    chain = tuple(p.strip() for p in source.split(".")) if _CHAIN.fullmatch(source.strip()) else None
    expr = Expr(source=source, program=program, names=names, paths=_paths(source, names),
                lookup=chain if chain and chain[0] in names else None)
    _CACHE[source] = expr
    return expr


def compile_mapping(mapping: dict[str, str]) -> dict[str, Expr]:
    """Compile a ``{field: expression}`` mapping (payloads, saved results, sub-flow input/output)."""
    return {key: compile_expr(src) for key, src in mapping.items()}


_JSON_LEAVES = (str, int, float, bool, type(None))


def _check_json(value: Any, source: str) -> Any:
    if isinstance(value, _JSON_LEAVES):
        return value
    if isinstance(value, list):
        for v in value:
            _check_json(v, source)
        return value
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for v in value.values():
            _check_json(v, source)
        return value
    raise ExprError(f"expression {source!r} gave a {type(value).__name__}, which is not JSON "
                    "(the order document is stored as it is)")


def evaluate_mapping(mapping: dict[str, Expr], scope: dict[str, Any]) -> dict[str, Any]:
    """Evaluate every entry of a compiled mapping into JSON values (what goes into the order document,
    payloads and replies); dotted keys are kept as they are."""
    return {key: _check_json(expr.evaluate(scope), expr.source) for key, expr in mapping.items()}
