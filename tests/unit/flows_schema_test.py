"""The JSON Schema of flow files (flows/graph/schema.py, docs/flows-schema.json): generated from the
models the loader validates with, every registered kind discriminated by `kind`, the reuse keys, and
the shipped copy regenerated whenever the models change."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import jsonschema
import pytest
import yaml

from flows.graph.model import NODE_KINDS, NodeSpec
from flows.graph.nodes import Kind, register
from flows.graph.schema import flows_schema
from tests.unit.flows_graph_harness import FIXTURES
from tests.unit.flows_library_test import CHILD, TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "docs" / "flows-schema.json"


def node_mapping(schema: dict[str, Any]) -> dict[str, str]:
    nodes = schema["$defs"]["BlueprintFile"]["properties"]["nodes"]["additionalProperties"]["anyOf"][0]
    return dict(nodes["discriminator"]["mapping"])


def test_shipped_schema_is_not_stale() -> None:
    """docs/flows-schema.json = the models now; regenerate with ``hub flows schema -o docs/flows-schema.json``."""
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(flows_schema())), "stale: run hub flows schema -o docs/flows-schema.json"


def test_every_registered_kind_is_in_the_schema_including_one_added_later() -> None:
    schema = flows_schema()
    assert set(node_mapping(schema)) == set(NODE_KINDS)
    for kind in NODE_KINDS.values():  # the loader picks the model by `kind`: an editor must ask for it
        assert "kind" in schema["$defs"][kind.spec.__name__]["required"]

    class StampSpec(NodeSpec):
        kind: Literal["stamp"] = "stamp"
        waits: ClassVar[bool] = False

    class Stamp(Kind):
        name = "stamp"
        spec = StampSpec

    register(Stamp)
    try:
        assert "stamp" in node_mapping(flows_schema())
    finally:
        del NODE_KINDS["stamp"]


@functools.cache
def validator() -> Any:
    """One validator for all files: ``jsonschema.validate`` regenerated the schema and checked it
    against the meta-schema on every call (0.15 s a file, 29 s for the shipped blueprints)."""
    schema = flows_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def flow_files() -> list[Path]:
    return sorted([*FIXTURES.rglob("*.yaml"), *(ROOT / "config" / "flows").rglob("*.yaml")])


def _yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


@pytest.mark.parametrize("path", [p for p in flow_files() if "stages" not in _yaml(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_v2_file_validates_against_the_schema(path: Path) -> None:
    validator().validate(_yaml(path))


def test_templates_children_and_fragments_validate() -> None:
    for text in (TEMPLATE, CHILD + "fragments: [close-out-esop]\n",
                 "fragment: f\ndescription: d\nnodes:\n  x: {kind: end}\n"):
        validator().validate(yaml.safe_load(text))


@pytest.mark.parametrize(("text", "why"), [
    ("name: x\nstart: a\nnodes:\n  a: {kind: call, next: b}\n", "a call without steps"),
    ("name: x\nstart: a\nnodes:\n  a: {next: b}\n", "a node without a kind"),
    ("name: x\nstart: a\nnodes:\n  a: {kind: bogus}\n", "an unknown kind"),
    ("name: x\nstart: a\nnodes:\n  a: {kind: end, reports: [{on: enter, partner: p, operation: o}]}\n",
     "`on` (YAML reads true) instead of `at`"),
    ("name: x\nextends: 3\n", "extends is a name"),
    ("name: x\ntemplate: maybe\n", "template is a boolean"),
    ("fragment: f\nnodes: {}\n", "a fragment with no nodes"),
])
def test_mistakes_are_refused_by_the_schema(text: str, why: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(yaml.safe_load(text))
