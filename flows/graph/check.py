"""Load-time validation of v2 blueprint files, every problem as ``file:line: key: message``.

Why at load: a typo in a condition, a partner operation that does not exist or a node no path leaves
would otherwise surface when the first order reaches it — maybe weeks later, with the order stuck.
Checked: the model (pydantic), every expression (CEL syntax and top-level names), references (partners
and their operations from config/partners/*.yaml, sub-flow blueprints), and reachability (every node
reachable from ``start``, and from every node some path reaches an ``end``), and the order SLA's
escalations (expressions, partner operations). In a ``user`` node, every
``fields.x`` an expression reads must be a field the node declares.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import flows.graph.nodes  # noqa: F401  (registers the kinds)
from flows.graph.expr import ExprError, compile_expr
from flows.graph.model import Blueprint
from hub.configfile import format_loc, line_of, read_yaml, validation_problems
from hub.errors import ConfigError
from hub.partners import Partner

__all__ = ["load_blueprint", "partner_operations", "problems_of"]

_FIELD_REF = re.compile(r"(?<![\w.])fields\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


def partner_operations(partners: dict[str, Partner]) -> dict[str, set[str]]:
    """partner name → the operation names its outbound config declares."""
    out: dict[str, set[str]] = {}
    for name, p in partners.items():
        ops = (p.outbound.config.get("operations") if p.outbound else None) or {}
        out[name] = set(ops)
    return out


def problems_of(bp: Blueprint, *, operations: dict[str, set[str]] | None = None,
                blueprints: set[str] | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """``(location, message)`` of every problem in a valid model (the locations are YAML paths)."""
    found: list[tuple[tuple[Any, ...], str]] = []
    for name, node in bp.nodes.items():
        at = ("nodes", name)
        for loc, src in node.expressions():
            try:
                compile_expr(src)
            except ExprError as exc:
                found.append(((*at, *loc), str(exc)))
        declared = {f.name for f in getattr(node, "fields", [])}
        if node.kind == "user":  # `fields.x` must be a field the node declares
            for loc, src in node.expressions():
                for name in _FIELD_REF.findall(src):
                    if name not in declared:
                        found.append(((*at, *loc), f"unknown field {name!r} (declared: {', '.join(sorted(declared))})"))
        if operations is not None:
            for loc, partner, op in node.calls():
                if partner not in operations:
                    found.append(((*at, *loc, "partner"), f"unknown partner {partner!r}"))
                elif op not in operations[partner]:
                    found.append(((*at, *loc), f"partner {partner!r} has no operation {op!r}"))
        target = getattr(node, "blueprint", None)
        if blueprints is not None and node.kind == "subflow" and target not in blueprints:
            found.append(((*at, "blueprint"), f"unknown blueprint {target!r}"))
        if node.kind == "join" and bp.nodes.get(getattr(node, "of", "")) is None:
            found.append(((*at, "of"), f"unknown parallel node {getattr(node, 'of', '')!r}"))
    for i, esc in enumerate(bp.sla.escalate if bp.sla else ()):  # G7: the order's SLA escalations
        where = ("sla", "escalate", i)
        for key, src in esc.payload.items():
            try:
                compile_expr(src)
            except ExprError as exc:
                found.append(((*where, "payload", key), str(exc)))
        if operations is not None and esc.partner not in operations:
            found.append(((*where, "partner"), f"unknown partner {esc.partner!r}"))
        elif operations is not None and esc.operation not in operations[esc.partner]:
            found.append((where, f"partner {esc.partner!r} has no operation {esc.operation!r}"))
    found += _reachability(bp)
    return found


def _reachability(bp: Blueprint) -> list[tuple[tuple[Any, ...], str]]:
    reached, todo = {bp.start}, [bp.start]
    while todo:
        for nxt in bp.nodes[todo.pop()].successors():
            if nxt not in reached and nxt in bp.nodes:  # a missing node is reported as such (library)
                reached.add(nxt)
                todo.append(nxt)
    found: list[tuple[tuple[Any, ...], str]] = [
        (("nodes", n), "not reachable from start") for n in bp.nodes if n not in reached]
    # nodes from which an end can be reached: walk the edges backwards from every end
    ends = {n for n, node in bp.nodes.items() if node.kind == "end"}
    incoming: dict[str, set[str]] = {n: set() for n in bp.nodes}
    for n, node in bp.nodes.items():
        for nxt in node.successors():
            incoming.get(nxt, set()).add(n)
    finishing, todo = set(ends), list(ends)
    while todo:
        for prev in incoming[todo.pop()]:
            if prev not in finishing:
                finishing.add(prev)
                todo.append(prev)
    found += [(("nodes", n), "no path from here reaches an end") for n in bp.nodes
              if n in reached and n not in finishing]
    return found


def load_blueprint(path: Path, *, operations: dict[str, set[str]] | None = None,
                   blueprints: set[str] | None = None) -> Blueprint:
    """Read and check one blueprint file; raise ConfigError listing every problem with its line."""
    data, node = read_yaml(path)
    try:
        bp = Blueprint.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(f"{path} is invalid", validation_problems(path, node, exc)) from exc
    problems = []
    for loc, message in problems_of(bp, operations=operations, blueprints=blueprints):
        line = line_of(node, loc)
        problems.append(f"{path}:{line}: {format_loc(loc)}: {message}" if line else f"{path}: {message}")
    if problems:
        raise ConfigError(f"{path} is invalid", problems)
    return bp
