"""Typed product-specific order fields: ``config/products/<product>.yaml``.

Why: the catalogue rows branch on fields of one product only (the SRV6 change's 变更类型 and 更换设备,
the internet line's access type, the ONU vendor…). The canonical order (hub/order.py) keeps such
fields in ``extensions``, untyped, so a wrong value used to pass the intake and fail in the middle of
a flow. A product file declares them — type, enum, regex, bounds, required in which scenarios — and the
intake checks every order of that product against it before answering (flows/admission.py), with the
same answers as any other invalid field: 400 problem+json (REST), SOAP fault, rejected record (SFTP,
AMQP). A product without a file is not checked. The file also gives the demo (``hub demo --all``) its
order samples, so a new blueprint needs no demo code.

Format (docs/products.md, schema docs/products.schema.json)::

    product: internet_line
    title: 互联网专线
    fields:
      access_type:                       # the name blueprints read (data.access_type / data.extensions.x)
        path: access_type                # where in the canonical order (default extensions.<name>)
        type: str                        # str | int | float | bool | list | object
        enum: [PON, PTN, SPN, OTN]
        required: [open, move]           # true (every scenario), false, or the scenarios that need it
        title: 接入方式
        sample: PON                      # the demo's value (default: derived from the rules)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.configfile import load_dir
from hub.errors import ConfigError, ValidationFailed
from hub.order import Scenario, WorkOrder

__all__ = ["FieldSpec", "ProductSpec", "check_order", "load_products", "products_schema", "sample_extensions",
           "sample_order"]

FieldType = Literal["str", "int", "float", "bool", "list", "object"]
_TOP_LEVEL = frozenset(WorkOrder.model_fields) - {"extensions"}
_PY = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,), "object": (dict,)}
#: text tried against a regex for a sample value, first match wins
_TEXT = ["demo", "1", "13800000000", "2026-01-05", "2026-01-05 09:00:00", "https://example.com/demo"]


class FieldSpec(BaseModel):
    """One typed order field of a product."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
                             description="dotted path in the canonical order; default extensions.<name>")
    type: FieldType = "str"
    title: str | None = Field(default=None, description="the documents' name (中文)")
    enum: list[Any] | None = Field(default=None, min_length=1)
    regex: str | None = None
    min: float | None = Field(default=None, description="int/float: lowest value; str/list: shortest length")
    max: float | None = Field(default=None, description="int/float: highest value; str/list: longest length")
    required: bool | list[Scenario] = Field(default=False, description="true, false, or the scenarios needing it")
    forbidden: list[Scenario] = Field(default_factory=list, description="scenarios in which the field must be absent")
    sample: Any = Field(default=None, description="the demo's value (default: derived from the rules)")
    note: str | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.enum is not None:
            for value in self.enum:
                if self.problem(value) is not None:
                    raise ValueError(f"enum value {value!r} is not a {self.type}")
        if self.sample is not None and self.problem(self.sample) is not None:
            raise ValueError(f"sample {self.sample!r}: {self.problem(self.sample)}")
        return self

    def required_in(self, scenario: str) -> bool:
        return self.required if isinstance(self.required, bool) else scenario in self.required

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable (None: it is)."""
        if isinstance(value, bool) and self.type in ("int", "float"):
            return f"must be {self.type}, not bool"
        if not isinstance(value, _PY[self.type]):
            return f"must be {self.type}, not {type(value).__name__}"
        if self.enum is not None and value not in self.enum:
            return f"must be one of {', '.join(map(str, self.enum))}"
        if self.regex is not None and isinstance(value, str) and re.fullmatch(self.regex, value) is None:
            return f"does not match {self.regex}"
        size: float | None = None
        if isinstance(value, (int, float)):
            size = float(value)
        elif isinstance(value, (str, list)):
            size = float(len(value))
        if size is not None and self.min is not None and size < self.min:
            return f"must be at least {self.min:g}" + (" long" if self.type in ("str", "list") else "")
        if size is not None and self.max is not None and size > self.max:
            return f"must be at most {self.max:g}" + (" long" if self.type in ("str", "list") else "")
        return None


class ProductSpec(BaseModel):
    """A product's typed order fields (``config/products/<product>.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    product: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str | None = None
    catalogue: list[str] = Field(default_factory=list, description="the catalogue rows the product's fields serve")
    origin: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$",
                               description="the partner whose REST intake `hub demo --all` posts the product's "
                                           "orders to (default esop)")
    fields: dict[str, FieldSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _paths(self) -> ProductSpec:
        for name, spec in self.fields.items():
            if spec.path is None:
                spec.path = f"extensions.{name}"
            root = spec.path.split(".", 1)[0]
            if root != "extensions" and root not in _TOP_LEVEL:
                raise ValueError(f"fields.{name}.path: {root!r} is not a canonical order field "
                                 f"(use extensions.<name> or one of {sorted(_TOP_LEVEL)})")
        return self


def load_products(config_dir: Path) -> dict[str, ProductSpec]:
    """Every ``config/products/*.yaml`` (none: an empty dict); bad files are ``file:line: key``, all at once."""
    products: dict[str, ProductSpec] = {}
    for path, spec in load_dir(config_dir / "products", ProductSpec).items():
        if spec.product != path.stem:
            raise ConfigError(f"{path} is invalid", [f"{path}:1: product: {spec.product!r} must match the file "
                                                     f"name {path.stem!r}"])
        products[spec.product] = spec
    return products


_MISSING = object()


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def check_order(spec: ProductSpec, scenario: str, order: dict[str, Any]) -> None:
    """Raise ValidationFailed listing every product field of ``order`` (canonical, as JSON) that is
    missing, forbidden or invalid in ``scenario``."""
    errors: list[dict[str, Any]] = []
    for name, field in spec.fields.items():
        path = str(field.path)
        value = _get(order, path)
        label = f"{name} ({field.title})" if field.title else name
        if value is _MISSING or value is None:
            if field.required_in(scenario):
                errors.append({"field": path, "type": "missing",
                               "message": f"{label} is required for {spec.product} {scenario}"})
            continue
        if scenario in field.forbidden:
            errors.append({"field": path, "type": "forbidden",
                           "message": f"{label} is not allowed for {spec.product} {scenario}"})
            continue
        problem = field.problem(value)
        if problem is not None:
            errors.append({"field": path, "type": "invalid", "message": f"{label} {problem}"})
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid {spec.product} field(s) in the order", errors)


def sample_value(field: FieldSpec) -> Any:
    """A value the field accepts (its ``sample``, else one derived from its rules)."""
    if field.sample is not None:
        return field.sample
    if field.enum:
        return field.enum[0]
    low = int(field.min) if field.min is not None else 1
    if field.type in ("int", "float"):
        return low
    if field.type == "bool":
        return True
    if field.type == "list":
        return [f"demo-{i + 1}" for i in range(max(low, 1))]
    if field.type == "object":
        return {}
    if field.regex is None:
        return "demo"
    return next((t for t in _TEXT if re.fullmatch(field.regex, t)), "demo")


def sample_extensions(spec: ProductSpec, scenario: str) -> dict[str, Any]:
    """Canonical-order fields (dotted path → value) for every field the scenario allows: what the
    demo merges into its base order, so each product's rows get a valid order without demo code."""
    return {str(f.path): sample_value(f) for f in spec.fields.values() if scenario not in f.forbidden}


def sample_order(spec: ProductSpec | None, product: str, scenario: str, external_order_id: str,
                 base: dict[str, Any]) -> dict[str, Any]:
    """A canonical order of ``product`` / ``scenario``: ``base`` (customer, addresses…) with the
    product file's samples at their paths — what ``hub demo --all`` posts for each blueprint."""
    order: dict[str, Any] = {**base, "external_order_id": external_order_id, "product": product,
                             "scenario": scenario, "extensions": dict(base.get("extensions") or {})}
    for path, value in (sample_extensions(spec, scenario) if spec is not None else {}).items():
        *parents, last = path.split(".")
        target = order
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return order


def products_schema() -> dict[str, Any]:
    """The JSON schema of a product file (docs/products.schema.json), for editors and the staleness test."""
    schema = ProductSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Product order fields (config/products/<product>.yaml)"
    return schema
