"""Read route files: ``config/routes/*.yaml`` (one route per file) → validated Route models.

Errors name the file, the line and the key (``hub/configfile.py``). Partners that still declare
``inbound.rest`` in ``config/partners/*.yaml`` get an implied REST route (``{partner}-rest``)
unless a route file already declares a REST source for them — so the core's REST intake keeps
working unchanged while new partners are connected by route files only. The implied route maps the
partner's fields with the partner's ``inbound.transform``, a route ``transform`` block like any other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hub.configfile import format_loc, read_yaml
from hub.errors import ConfigError
from hub.partner_auth import HmacAuth
from hub.partners import ApiKeyAuth, Partner
from routes.models import RouteSpec, validate_route


@dataclass(frozen=True)
class RouteFile:
    path: Path | None  # None: implied by a partner file
    digest: str
    route: RouteSpec


def routes_dir(config_dir: Path) -> Path:
    return config_dir / "routes"


def load_route_data(path: Path, data: Any, node: Any = None) -> RouteSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is invalid", [f"{path}:1: (document): a route file must be a mapping"])
    data = {"name": path.stem, **data}
    try:
        return validate_route(data)
    except ValidationError as exc:
        raise ConfigError(f"{path} is invalid", _problems(path, node, exc)) from exc


def _line(node: Any, loc: tuple[Any, ...]) -> int | None:
    """Like ``configfile.line_of`` but steps over union tags (``source.sftp.format``: ``sftp`` is the
    connector tag pydantic adds to the location, not a key in the file)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                continue
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def _problems(path: Path, node: Any, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        out.append(f"{path}:{_line(node, loc)}: {format_loc(loc)}: {err['msg']}")
    return out


def load_route_file(path: Path) -> RouteFile:
    """One file → one validated route; raises ConfigError naming file:line: key."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    data, node = read_yaml(path)
    return RouteFile(path, digest, load_route_data(path, data, node))


def implied_rest_routes(partners: dict[str, Partner], declared: list[RouteSpec], max_body: int,
                        config_dir: Path | None = None) -> list[RouteFile]:
    """The REST route each partner file with ``inbound.rest`` implies (unless a route file declares
    one): the partner's auth and admission for the source, its ``inbound.transform`` as the route's
    ``transform`` — the same model and the same code that map every other source."""
    covered = {r.source.partner for r in declared if r.source.connector == "rest"}
    out = []
    for partner in partners.values():
        rest = partner.inbound.rest if partner.inbound else None
        if rest is None or not rest.enabled or partner.name in covered:
            continue
        assert partner.inbound is not None
        data: dict[str, Any] = {
            "name": f"{partner.name}-rest",
            "description": f"implied by config/partners/{partner.name}.yaml inbound.rest",
            "source": {
                "connector": "rest",
                "partner": partner.name,
                "auth": rest.auth.model_dump(mode="python"),
                "rate_limit": rest.rate_limit.model_dump(mode="python") if rest.rate_limit else None,
                "order_schema": partner.inbound.order_schema.model_dump(mode="python"),
                "max_body_bytes": rest.max_body_bytes or max_body,
                "sensitive_fields": partner.sensitive_fields,
            },
            "transform": partner.inbound.transform,
            "target": {"topic": "inbound"},
        }
        if isinstance(rest.auth, HmacAuth):
            data["source"]["auth"]["secret"] = rest.auth.secret.get_secret_value()
        elif isinstance(rest.auth, ApiKeyAuth):  # kind: client_cert has no secret
            data["source"]["auth"]["keys"] = [k.get_secret_value() for k in rest.auth.keys]
        try:
            route = validate_route(data)
        except ValidationError as exc:
            raise ConfigError(f"partner {partner.name}: invalid REST route",
                              _partner_problems(partner.name, config_dir, exc)) from exc
        out.append(RouteFile(None, hashlib.sha256(repr(data).encode()).hexdigest(), route))
    return out


def _partner_problems(name: str, config_dir: Path | None, exc: ValidationError) -> list[str]:
    """``file:line: key: message`` for the parts of an implied route that came from the partner file
    (its ``inbound.transform``; the rest was validated when the partner file was loaded)."""
    path = (config_dir or Path("config")) / "partners" / f"{name}.yaml"
    try:
        _data, node = read_yaml(path)
    except ConfigError:
        node = None
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        in_file = ("inbound", *loc) if loc[:1] == ("transform",) else ("inbound", "rest", *loc[1:])
        line = _line(node, in_file) if node is not None else None
        out.append(f"{path}:{line or 1}: {format_loc(in_file)}: {err['msg']}")
    return out


def load_routes(config_dir: Path) -> tuple[dict[Path, RouteFile], list[str]]:
    """Every route file; bad files are returned as problems (the good ones still load)."""
    loaded: dict[Path, RouteFile] = {}
    problems: list[str] = []
    folder = routes_dir(config_dir)
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            loaded[path] = load_route_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems or [str(exc)])
    names: dict[str, Path] = {}
    for path, rf in loaded.items():
        name = rf.route.name
        if name in names:
            problems.append(f"{path}: name: route {name!r} is already declared in {names[name]}")
        names[name] = path
    return loaded, problems
