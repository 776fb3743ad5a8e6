"""Load-time checks of v2 blueprints: expressions, references and reachability, as file:line: key: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.graph.check import load_blueprint, partner_operations
from flows.graph.expr import ExprError, compile_expr
from hub.errors import ConfigError
from hub.partners import load_partners
from tests.unit.flows_graph_harness import CAM_OPERATIONS, FIXTURES

CONFIG = Path(__file__).resolve().parents[2] / "config"


def operations() -> dict[str, set[str]]:
    return {**partner_operations(load_partners(CONFIG)), "cam": CAM_OPERATIONS}


def problems(tmp_path: Path, text: str, **kw: object) -> list[str]:
    path = tmp_path / "bp.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_blueprint(path, **kw)  # type: ignore[arg-type]
    return info.value.problems


HEAD = "name: t\nstart: a\nnodes:\n"


def test_shipped_fixture_blueprints_pass_every_check() -> None:
    names = {p.stem for p in FIXTURES.glob("*.yaml")}
    blueprints = {load_blueprint(FIXTURES / f"{n}.yaml").name for n in names}
    for name in names:
        load_blueprint(FIXTURES / f"{name}.yaml", operations=operations(), blueprints=blueprints)


def test_expression_syntax_error_names_file_line_and_key(tmp_path: Path) -> None:
    (p,) = problems(tmp_path, HEAD + "  a:\n    kind: auto\n    set:\n      x: 'data.y =='\n    next: e\n"
                              "  e: {kind: end}\n")
    assert p.startswith(f"{tmp_path / 'bp.yaml'}:7: nodes.a.set.x: syntax error in 'data.y =='")


def test_unknown_top_level_name_is_rejected_at_load(tmp_path: Path) -> None:
    (p,) = problems(tmp_path, HEAD + "  a:\n    kind: choice\n    transitions:\n"
                              "      - {when: \"order.x == 1\", to: e}\n    next: e\n  e: {kind: end}\n")
    assert ":7: nodes.a.transitions[0].when: unknown name order in 'order.x == 1'" in p


def test_macro_variables_are_not_unknown_names() -> None:
    assert compile_expr("data.items.all(i, i.qty > 0) && data.items.exists(j, j.sku == 'x')").names == {"data"}
    with pytest.raises(ExprError, match="unknown name qty"):
        compile_expr("data.items.all(i, qty > 0)")


def test_unknown_partner_and_operation_are_named_with_their_line(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "  a:\n    kind: call\n    steps:\n      - {partner: resource, operation: nope}\n"
                                  "      - {partner: ghost, operation: x}\n    next: e\n  e: {kind: end}\n",
                     operations=operations())
    assert [p.split(": ", 1)[1] for p in found] == [
        "nodes.a.steps[0]: partner 'resource' has no operation 'nope'",
        "nodes.a.steps[1].partner: unknown partner 'ghost'"]
    assert found[0].startswith(f"{tmp_path / 'bp.yaml'}:7: ") and found[1].startswith(f"{tmp_path / 'bp.yaml'}:8: ")


def test_unreachable_nodes_and_paths_without_an_end(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "  a: {kind: user, next: b}\n  b: {kind: auto, next: a}\n"
                                  "  orphan: {kind: end}\n")
    assert sorted(p.split(": ", 1)[1] for p in found) == [
        "nodes.a: no path from here reaches an end", "nodes.b: no path from here reaches an end",
        "nodes.orphan: not reachable from start"]
    assert any(":6:" in p for p in found)  # orphan is on line 6


def test_unknown_subflow_blueprint_and_join_target(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "  a: {kind: subflow, blueprint: p99, next: j}\n"
                                  "  j: {kind: join, of: a, next: e}\n  e: {kind: end}\n", blueprints={"p14"})
    assert any("nodes.a.blueprint: unknown blueprint 'p99'" in p for p in found)


def test_model_errors_keep_file_and_line(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "  a:\n    kind: call\n    steps:\n"
                                  "      - {partner: p, operation: o, mode: poll}\n  e: {kind: end}\n")
    assert any(":7: nodes.a.steps[0]: " in p and "poll_operation" in p for p in found), found


def test_user_node_expressions_name_only_declared_fields(tmp_path: Path) -> None:
    (p,) = problems(tmp_path, HEAD + "  a:\n    kind: user\n    fields: [{name: decision}]\n    transitions:\n"
                              "      - {when: \"fields.decison == 'x'\", to: e}\n    next: e\n  e: {kind: end}\n")
    assert ":8: nodes.a.transitions[0].when: unknown field 'decison' (declared: decision)" in p
