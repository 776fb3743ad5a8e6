"""The JSON Schema of a v2 flow file (``hub flows schema``, shipped as docs/flows-schema.json).

Why generated: editors (yaml-language-server, VS Code, IntelliJ) complete and check blueprint files from
it, and it can only stay true if it comes from the models the loader validates with. The loader itself
looks a node's kind up in ``NODE_KINDS``; the schema says the same thing as a union of every registered
kind's spec model discriminated by ``kind``, so a kind added with ``@register`` appears here (and the
staleness test asks for docs/flows-schema.json to be regenerated).

A *file* differs from the resolved ``Blueprint``: it may say ``extends`` / ``fragments`` / ``template``,
``start`` may come from the template and a node may be ``null`` (removes the template's node); a
fragment file has ``fragment``, ``description``, ``nodes`` and/or ``sla``.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

import flows.graph.nodes  # noqa: F401  (registers the kinds)
from flows.graph.model import NODE_KINDS, Blueprint, SlaSpec

__all__ = ["flows_schema"]

_OPTIONAL_IN_FILE = {"start"}  # may come from the template


#: typing constructs held as Any: the types they build are made at runtime from the registry
_dict: Any = dict
_optional: Any = Optional
_union: Any = Union


def _node_union() -> Any:
    specs = tuple(kind.spec for kind in NODE_KINDS.values())
    return Annotated[_union[specs], Field(discriminator="kind")]


def _file_models() -> tuple[type[BaseModel], type[BaseModel]]:
    node = _node_union()
    fields: dict[str, Any] = {}
    for name, info in Blueprint.model_fields.items():
        if name == "nodes":
            continue
        if name in _OPTIONAL_IN_FILE:
            fields[name] = (_optional[info.annotation], Field(default=None, description="defaults to the template's"))
        else:
            fields[name] = (info.annotation, info)
    blueprint_file = create_model(
        "BlueprintFile",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A blueprint or template file (config/flows/<product>/<scenario>.yaml, templates/*.yaml).",
        **fields,
        nodes=(_dict[str, _optional[node]], Field(default_factory=dict, description=(
            "named nodes; with extends, a node replaces the template's node of that name whole and null "
            "removes it"))),
        extends=(str | None, Field(default=None, description="the template this blueprint is built on")),
        fragments=(list[str], Field(default_factory=list, description="fragments whose nodes are added")),
        template=(bool, Field(default=False, description="true: only extended, never run itself")),
    )
    fragment_file = create_model(
        "FragmentFile",
        __config__=ConfigDict(extra="forbid"),
        __doc__=("Shared nodes (config/flows/fragments/*.yaml), added as they are by `fragments: [name]`, "
                 "and/or a shared G7 `sla` (the including blueprint's own sla keys win)."),
        fragment=(str, Field(description="the name blueprints include it by")),
        description=(str, ""),
        nodes=(_dict[str, node], Field(default_factory=dict)),
        sla=(SlaSpec | None, Field(default=None, description="the order SLA the including blueprints get")),
    )
    return blueprint_file, fragment_file


def flows_schema() -> dict[str, Any]:
    """JSON Schema of a flow file (blueprint, template or fragment), for editors."""
    blueprint_file, fragment_file = _file_models()
    schema = TypeAdapter(_union[blueprint_file, fragment_file]).json_schema()
    for kind in NODE_KINDS.values():  # the loader needs `kind` (it picks the model); the default hides that
        spec = schema["$defs"][kind.spec.__name__]
        spec["required"] = ["kind", *[r for r in spec.get("required", []) if r != "kind"]]
    # a fragment brings nodes or an sla (or both): the loader refuses one with neither
    schema["$defs"]["FragmentFile"]["anyOf"] = [
        {"required": ["sla"], "properties": {"sla": {"type": "object"}}},
        {"required": ["nodes"], "properties": {"nodes": {"minProperties": 1}}}]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hub flow blueprint"
    return schema
