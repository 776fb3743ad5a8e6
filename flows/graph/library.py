"""The blueprint library: every v2 file under config/flows/, with reuse resolved and each version pinned.

Why one library: ~150 product × scenario flows share most of their shape (the standard line flow of
SPEC §4, the close-out pair archive → close-report, P14), so a blueprint may ``extends`` a template and
include ``fragments``; what runs is the *resolved* blueprint, and that is what an order pins
(``Blueprint.digest()``). The worker, ``hub flows`` and the tests all load through ``load_library``, so
what ``hub flows check`` accepts is exactly what a worker runs.

Files (config/flows/**/*.yaml):

- a **blueprint** has top-level ``nodes:`` (or ``extends:``); ``product`` + ``scenario`` make it an
  order flow, neither a sub-flow (P14);
- a **template** is a blueprint file with ``template: true`` (by convention under templates/): it is
  never run itself, only extended; it may leave holes its children fill (a ``next`` naming a node the
  child defines), so it is checked as part of each child;
- a **fragment** (fragments/*.yaml) has top-level ``fragment: <name>`` and ``nodes:``, added as they are;
- a file with ``stages:`` is the retired v1 format: a load error naming the file (it would never run).

Reuse rules: the child's ``nodes`` entries replace the template's node of the same name whole, ``null``
removes one; the child's top-level keys win over the template's; a fragment's node may not share a name
with another node (that is an error naming both places); a fragment's ``sla`` (G7 clock) is the default
of the blueprints including it, key by key (``sla`` is the one top-level mapping merged so, with a
template's too). Edges and every other check run on the merged
graph, and each problem names the file and line where the offending node or key was written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

import flows.graph.nodes  # noqa: F401  (registers the kinds)
from flows.graph.check import problems_of
from flows.graph.model import Blueprint, SlaSpec, _parse_node
from hub.configfile import format_loc, line_of, read_yaml
from hub.errors import ConfigError

__all__ = ["REUSE_KEYS", "Library", "load_file", "load_library", "restore"]

#: keys of a blueprint *file* that are resolved away: the Blueprint model never sees them
REUSE_KEYS = ("extends", "fragments", "template")
_FRAGMENT_KEYS = {"fragment", "description", "nodes", "sla"}
#: top-level mappings merged key by key (the including blueprint's keys win) instead of replaced whole:
#: a product sets its SLA's ``hours`` and keeps the shared escalations (config/flows/fragments/sla.yaml)
_KEYWISE = ("sla",)
_EDGE_KEYS = {"next", "to", "on_failure", "branches", "start"}


@dataclass(frozen=True)
class _Source:
    """Where a piece of a merged blueprint was written (for ``file:line`` in its problems)."""

    path: Path
    root: yaml.Node | None

    def at(self, loc: tuple[Any, ...], message: str) -> str:
        line = line_of(self.root, loc)
        return f"{self.path}:{line}: {format_loc(loc)}: {message}" if line else f"{self.path}: {message}"


@dataclass
class _File:
    path: Path
    data: dict[str, Any]
    src: _Source
    role: str  # blueprint | template | fragment
    name: str


@dataclass
class _Merged:
    """A resolved blueprint before validation: the data and where each node and top-level key came from."""

    data: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, Any] = field(default_factory=dict)
    top: dict[str, _Source] = field(default_factory=dict)
    node_src: dict[str, _Source] = field(default_factory=dict)
    fragments: set[str] = field(default_factory=set)
    uses: list[str] = field(default_factory=list)

    def source(self, loc: tuple[Any, ...], default: _Source) -> _Source:
        if len(loc) >= 2 and loc[0] == "nodes" and loc[1] in self.node_src:
            return self.node_src[loc[1]]
        if loc and loc[0] in self.top:
            return self.top[loc[0]]
        return default


@dataclass(frozen=True)
class Library:
    """Every loaded blueprint (order flows and sub-flows; templates are not runnable)."""

    blueprints: dict[str, Blueprint]
    files: dict[str, Path]
    templates: dict[str, Path] = field(default_factory=dict)
    fragments: dict[str, Path] = field(default_factory=dict)
    #: blueprint name → what it is built from ("extends x", "fragment y"), for ``hub flows show``
    uses: dict[str, tuple[str, ...]] = field(default_factory=dict)

    _by_key: dict[tuple[str, str], Blueprint] = field(init=False, repr=False, compare=False)
    _by_digest: dict[str, Blueprint] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # looked up for every order event: dicts, not a scan of ~150 blueprints
        object.__setattr__(self, "_by_key", {(bp.product, bp.scenario): bp for bp in self.blueprints.values()
                                             if bp.product is not None and bp.scenario is not None})
        object.__setattr__(self, "_by_digest", {bp.digest(): bp for bp in self.blueprints.values()})

    def get(self, product: str, scenario: str) -> Blueprint | None:
        return self._by_key.get((product, str(scenario)))

    def by_name(self, name: str) -> Blueprint | None:
        return self.blueprints.get(name)

    def by_digest(self, digest: str) -> Blueprint | None:
        """The loaded blueprint with this content digest (None: an older version, see ``versions``)."""
        return self._by_digest.get(digest)

    def versions(self) -> dict[str, dict[str, Any]]:
        """digest → the resolved blueprint as JSON: what a runtime stores so an order pinned to a version
        finishes on it after an edit (``restore`` turns it back into the same blueprint)."""
        return {bp.digest(): bp.model_dump(mode="json") for bp in self.blueprints.values()}

    def __iter__(self) -> Iterator[Blueprint]:
        return iter(self.blueprints.values())

    def __len__(self) -> int:
        return len(self.blueprints)


def restore(doc: dict[str, Any], digest: str | None = None) -> Blueprint:
    """A stored version (``Library.versions()`` value) back as a Blueprint; with ``digest``, refuse one
    whose content no longer gives that digest (a stored document edited, or a model change that alters
    what the engine would read)."""
    bp = Blueprint.model_validate(doc)
    if digest is not None and bp.digest() != digest:
        raise ConfigError(f"stored blueprint {bp.name} does not match its digest",
                          [f"{bp.name}: digest {bp.digest()} != pinned {digest}"])
    return bp


# ---- reading ----------------------------------------------------------------------------------
def _classify(path: Path, problems: list[str]) -> _File | None:
    try:
        data, root = read_yaml(path)
    except ConfigError as exc:
        problems.extend(exc.problems or [str(exc)])
        return None
    src = _Source(path, root)
    if not isinstance(data, dict):
        problems.append(src.at((), "a flow file is a mapping: `nodes:` (v2 blueprint) or `fragment:`"))
        return None
    if "fragment" in data:
        extra = sorted(set(data) - _FRAGMENT_KEYS)
        problems += [src.at((k,), f"not a fragment key (allowed: {', '.join(sorted(_FRAGMENT_KEYS))})")
                     for k in extra]
        if not isinstance(data["fragment"], str) or not data["fragment"]:
            problems.append(src.at(("fragment",), "the fragment's name (a string)"))
            return None
        if "sla" not in data and (not isinstance(data.get("nodes"), dict) or not data["nodes"]):
            problems.append(src.at(("nodes",), "a fragment needs `nodes:` (a mapping of named nodes) or `sla:`"))
            return None
        if not isinstance(data.get("nodes", {}), dict):
            problems.append(src.at(("nodes",), "a mapping of named nodes"))
            return None
        return _File(path, data, src, "fragment", data["fragment"])
    if "stages" in data and "nodes" not in data:  # v1: not silently ignored, it would never run
        problems.append(src.at(("stages",), "the v1 `stages:` format is no longer run: rewrite it as a graph "
                                            "of `nodes:` (docs/flows-v2.md)"))
        return None
    if "nodes" not in data and "extends" not in data:
        problems.append(src.at((), "not a v2 blueprint: it needs `nodes:` (or `extends:`), or `fragment:`"))
        return None
    template = data.get("template", False)
    if not isinstance(template, bool):
        problems.append(src.at(("template",), "true or false"))
        return None
    name = data.get("name")
    if not isinstance(name, str):
        problems.append(src.at(("name",) if "name" in data else (), "every blueprint needs a `name` (a string)"))
        return None
    return _File(path, data, src, "template" if template else "blueprint", name)


# ---- reuse ------------------------------------------------------------------------------------
class _Resolver:
    def __init__(self, templates: dict[str, _File], fragments: dict[str, _File], problems: list[str]) -> None:
        self.templates, self.fragments, self.problems = templates, fragments, problems
        self.cache: dict[str, _Merged] = {}

    def resolve(self, f: _File, stack: tuple[str, ...] = ()) -> _Merged:
        if f.role == "template" and f.name in self.cache:
            return self.cache[f.name]
        merged = _Merged()
        parent = f.data.get("extends")
        if parent is not None:
            merged = self._extend(f, parent, stack)
        for key, value in f.data.items():
            if key not in ("nodes", *REUSE_KEYS):
                base = merged.data.get(key)
                if key in _KEYWISE and isinstance(base, dict) and isinstance(value, dict):
                    value = _keywise(base, value)
                merged.data[key] = value
                merged.top[key] = f.src
        own = f.data.get("nodes") or {}
        if not isinstance(own, dict):
            self.problems.append(f.src.at(("nodes",), "a mapping of named nodes"))
            own = {}
        for name, raw in own.items():
            if raw is None:
                if name in merged.nodes:
                    del merged.nodes[name]
                    del merged.node_src[name]
                else:
                    self.problems.append(f.src.at(("nodes", name), f"null removes a template's node: no {name!r}"))
                continue
            merged.nodes[name] = raw
            merged.node_src[name] = f.src
        self._include(f, merged)
        if f.role == "template":
            self.cache[f.name] = merged
        return merged

    def _extend(self, f: _File, parent: Any, stack: tuple[str, ...]) -> _Merged:
        template = self.templates.get(parent) if isinstance(parent, str) else None
        if template is None:
            known = ", ".join(sorted(self.templates)) or "none"
            self.problems.append(f.src.at(("extends",), f"unknown template {parent!r} (templates: {known})"))
            return _Merged()
        if template.name in (*stack, f.name):
            chain = " → ".join((*stack, f.name, template.name))
            self.problems.append(f.src.at(("extends",), f"templates extend each other in a cycle: {chain}"))
            return _Merged()
        base = self.resolve(template, (*stack, f.name))
        merged = _Merged({k: v for k, v in base.data.items() if k != "name"}, dict(base.nodes),
                         {k: v for k, v in base.top.items() if k != "name"}, dict(base.node_src),
                         set(base.fragments), [f"extends {template.name}", *base.uses])
        return merged

    def _include(self, f: _File, merged: _Merged) -> None:
        """Add the nodes of ``f``'s fragments after its own; a name already taken is an error naming both."""
        names = f.data.get("fragments") or []
        if not isinstance(names, list):
            self.problems.append(f.src.at(("fragments",), "a list of fragment names"))
            return
        for i, name in enumerate(names):
            frag = self.fragments.get(name) if isinstance(name, str) else None
            if frag is None:
                known = ", ".join(sorted(self.fragments)) or "none"
                self.problems.append(f.src.at(("fragments", i), f"unknown fragment {name!r} (fragments: {known})"))
                continue
            if name in merged.fragments:
                continue  # already included by the template: its nodes are there once
            merged.fragments.add(name)
            merged.uses.append(f"fragment {name}")
            if isinstance(frag.data.get("sla"), dict) and "sla" not in merged.data:
                merged.data["sla"], merged.top["sla"] = frag.data["sla"], frag.src
            elif isinstance(frag.data.get("sla"), dict) and isinstance(merged.data["sla"], dict):
                # the blueprint's own keys win (`sla: null` in the blueprint: no SLA, nothing filled in)
                merged.data["sla"] = _keywise(frag.data["sla"], merged.data["sla"])
            for node_name, raw in (frag.data.get("nodes") or {}).items():
                other = merged.node_src.get(node_name)
                if other is not None:
                    where = f"{other.path}:{line_of(other.root, ('nodes', node_name))}"
                    self.problems.append(frag.src.at(
                        ("nodes", node_name), f"node {node_name!r} of fragment {name!r} is also defined at {where}"))
                    continue
                merged.nodes[node_name] = raw
                merged.node_src[node_name] = frag.src


# ---- checking ---------------------------------------------------------------------------------
_DURATION = ("after_s", "hours")


def _keywise(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """``high``'s keys over ``low``'s; a duration in ``high`` (after_s or hours) replaces ``low``'s
    either, so a product's ``after_s`` is not "both" with the fragment's ``hours``."""
    if any(k in high for k in _DURATION):
        low = {k: v for k, v in low.items() if k not in _DURATION}
    return {**low, **high}


def _edge_loc(raw: Any, target: str, loc: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """The path of the key in a raw node that names ``target`` (``next``, ``transitions[0].to`` …)."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            if value == target and key in _EDGE_KEYS:
                return (*loc, key)
            found = _edge_loc(value, target, (*loc, key))
            if found is not None:
                return found
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            if value == target and loc and loc[-1] == "branches":
                return (*loc, i)
            found = _edge_loc(value, target, (*loc, i))
            if found is not None:
                return found
    return None


def _edges(merged: _Merged) -> list[tuple[tuple[Any, ...], str]]:
    """Edges to nodes that do not exist, at the key that names them."""
    found: list[tuple[tuple[Any, ...], str]] = []
    start = merged.data.get("start")
    if isinstance(start, str) and start not in merged.nodes:
        found.append((("start",), f"unknown node {start!r}"))
    for name, raw in merged.nodes.items():
        try:
            spec = _parse_node(raw)
        except (ValueError, ValidationError):
            continue  # the model validation reports it
        for to in spec.successors():
            if to not in merged.nodes:
                found.append((("nodes", name, *(_edge_loc(raw, to) or ())), f"transition to unknown node {to!r}"))
    return found


def _validate(f: _File, merged: _Merged, *, operations: dict[str, set[str]] | None,
              names: set[str], problems: list[str]) -> Blueprint | None:
    def report(loc: tuple[Any, ...], message: str) -> None:
        src = merged.source(loc, f.src)  # a template's or fragment's line: say which blueprint it was in
        problems.append(src.at(loc, message if src is f.src else f"{message} (in blueprint {f.name}, {f.path})"))

    before = len(problems)
    edges = _edges(merged)
    for loc, message in edges:
        report(loc, message)
    try:
        bp = Blueprint.model_validate({**merged.data, "nodes": merged.nodes}, context={"edges_checked": True})
    except ValidationError as exc:
        for err in exc.errors():
            report(tuple(err["loc"]), err["msg"])
        return None
    for loc, message in problems_of(bp, operations=operations, blueprints=names):
        if not (edges and message == "no path from here reaches an end"):  # a missing node cuts paths
            report(loc, message)
    return bp if len(problems) == before else None


def _check_parts(f: _File, problems: list[str]) -> None:
    """The node shapes of a template or fragment on their own, so a typo in one nobody uses shows too."""
    if isinstance(f.data.get("sla"), dict):
        try:
            SlaSpec.model_validate(f.data["sla"])
        except ValidationError as exc:
            problems += [f.src.at(("sla", *err["loc"]), err["msg"]) for err in exc.errors()]
    for name, raw in (f.data.get("nodes") or {}).items() if isinstance(f.data.get("nodes"), dict) else ():
        if raw is None:
            continue
        try:
            _parse_node(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("nodes", name, *err["loc"])
                problems.append(f.src.at(loc, err["msg"]))
        except ValueError as exc:
            problems.append(f.src.at(("nodes", name), f"Value error, {exc}"))


def _scan(root: Path, problems: list[str]) -> tuple[dict[str, _File], dict[str, _File]]:
    """Blueprint and template files by name, fragment files by name (a second of a name is an error)."""
    named: dict[str, _File] = {}
    fragments: dict[str, _File] = {}
    for f in (f for p in sorted(root.rglob("*.yaml")) if (f := _classify(p, problems)) is not None):
        space = fragments if f.role == "fragment" else named
        if f.name in space:
            what = "fragment" if f.role == "fragment" else "blueprint"
            key_loc = ("fragment",) if f.role == "fragment" else ("name",)
            problems.append(f.src.at(key_loc, f"{what} {f.name!r} is also defined in {space[f.name].path}"))
            continue
        space[f.name] = f
    return named, fragments


def load_library(config_dir: Path, operations: dict[str, set[str]] | None = None, *,
                 directory: Path | None = None) -> Library:
    """Load, resolve and check every v2 flow file under ``config_dir/flows`` (or ``directory``).

    ``operations`` (``check.partner_operations(load_partners(config_dir))``) turns on the partner and
    operation reference checks. Every problem of every file is raised at once as one ConfigError, each
    ``file:line: key: message``.
    """
    root = directory if directory is not None else config_dir / "flows"
    problems: list[str] = []
    named, fragments = _scan(root, problems)
    templates = {n: f for n, f in named.items() if f.role == "template"}
    for part in (*templates.values(), *fragments.values()):
        _check_parts(part, problems)
    resolver = _Resolver(templates, fragments, problems)
    runnable = {n: f for n, f in named.items() if f.role == "blueprint"}
    loaded: dict[str, Blueprint] = {}
    uses: dict[str, tuple[str, ...]] = {}
    resolved = {name: resolver.resolve(f) for name, f in runnable.items()}
    for name, f in runnable.items():
        bp = _validate(f, resolved[name], operations=operations, names=set(runnable), problems=problems)
        if bp is not None:
            loaded[name], uses[name] = bp, tuple(resolved[name].uses)
    seen: dict[tuple[str, str], str] = {}
    for name, bp in loaded.items():
        if bp.product is None and bp.scenario is None:
            continue
        f, merged = runnable[name], resolved[name]
        if bp.product is None or bp.scenario is None:
            given = ("scenario",) if bp.product is None else ("product",)  # point at the key that is there
            problems.append(merged.source(given, f.src).at(
                given, "an order flow names both product and scenario (a sub-flow neither)"))
            continue
        key = (bp.product, bp.scenario)
        if key in seen:
            problems.append(merged.source(("scenario",), f.src).at(
                ("scenario",), f"{bp.product} {bp.scenario} is also run by blueprint {seen[key]!r} "
                               f"({runnable[seen[key]].path})"))
            continue
        seen[key] = name
    if problems:
        raise ConfigError(f"invalid flow blueprints under {root}", list(dict.fromkeys(problems)))
    return Library(blueprints=loaded, files={n: runnable[n].path for n in loaded},
                   templates={n: f.path for n, f in templates.items()},
                   fragments={n: f.path for n, f in fragments.items()}, uses=uses)


def load_file(path: Path, config_dir: Path, operations: dict[str, set[str]] | None = None, *,
              directory: Path | None = None) -> Blueprint:
    """One blueprint file resolved against the templates and fragments of ``config_dir/flows`` (or
    ``directory``), wherever the file is: ``hub flows diff`` of an older copy (``git show``) or of a file
    not yet in place. Problems of other files in the library are not this file's and are ignored."""
    problems: list[str] = []
    named, fragments = _scan(directory if directory is not None else config_dir / "flows", [])
    f = _classify(path, problems)
    if f is None and not problems:
        problems.append(f"{path}: not a v2 blueprint (a v1 `stages:` file or a fragment)")
    elif f is not None and f.role != "blueprint":
        problems.append(f"{path}: a {f.role} is not run itself; compare the blueprints built from it")
    bp = None
    if f is not None and not problems:
        templates = {n: t for n, t in named.items() if t.role == "template"}
        merged = _Resolver(templates, fragments, problems).resolve(f)
        names = {n for n, b in named.items() if b.role == "blueprint"} | {f.name}
        bp = _validate(f, merged, operations=operations, names=names, problems=problems)
    if bp is None or problems:
        raise ConfigError(f"{path} is invalid", list(dict.fromkeys(problems)))
    return bp
