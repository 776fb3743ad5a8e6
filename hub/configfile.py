"""Load YAML into pydantic models with errors that name the file, the line and the key.

Why: an integration engineer edits YAML by hand; "validation error at loc ('stages', 3, 'kind')"
is not an answer, "config/flows/x.yaml:41: stages[3].kind: Input should be 'auto', 'call'…" is.
``${VAR}`` and ``${VAR:-default}`` are expanded from the environment (or from the file ``VAR_FILE``
names) so secrets stay out of the configuration files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hub.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

#: libyaml's parser when PyYAML was built with it (the wheels are): the pure-Python one took ~6 ms
#: per partner file, 160 ms for the 25 partners of the catalogues — on the event loop of every
#: test that builds a Runtime, and at every route reload. Same YAML 1.1 safe schema, same marks.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: ``${VAR}`` / ``${VAR:-default}`` (hub/profiles.py reads the defaults too)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def env_value(name: str) -> str | None:
    """``$NAME``, else the contents of the file ``$NAME_FILE`` names, else None.

    Why files: secrets mounted by the orchestrator (Kubernetes/Docker secrets, systemd
    credentials) are files, and a value in the environment shows in ``ps e`` and crash dumps.
    One trailing newline is dropped (``echo secret > file``). Both set is refused: which one
    wins would be a guess."""
    file_var = f"{name}_FILE"
    path = os.environ.get(file_var)
    if name in os.environ:
        if path:
            raise ConfigError(f"both {name} and {file_var} are set", [f"{name}: set {name} or {file_var}, not both"])
        return os.environ[name]
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file_var}", [f"{file_var}={path}: {exc.strerror}"]) from exc
    return text[:-1] if text.endswith("\n") else text


def expand_env(value: Any) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree
    (``VAR`` from the environment, or from the file ``VAR_FILE`` names: :func:`env_value`)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            found = env_value(name)
            if found is not None:
                return found
            if default is not None:
                return default
            raise KeyError(name)

        return ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML node tree along ``loc``; return the 1-based line of the deepest match."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node = value_node
                    line = key_node.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse one YAML file; syntax errors become ConfigError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}", [f"{path}: {exc.strerror}"]) from exc
    try:
        node = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # a safe loader: libyaml's or PyYAML's
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML in {path}", [f"{where}: {exc}"]) from exc
    try:
        data = expand_env(data)
    except KeyError as exc:
        raise ConfigError(
            f"undefined environment variable in {path}",
            [f"{path}: ${{{exc.args[0]}}} is not set and has no default"],
        ) from exc
    except ConfigError as exc:  # a VAR_FILE that cannot be read, or VAR and VAR_FILE both set
        raise ConfigError(f"environment variable in {path}", [f"{path}: {p}" for p in exc.problems]) from exc
    return data, node


def without_union_tags(node: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without the tags pydantic inserts for a tagged union (``auth.api_key.keys`` for the
    YAML's ``auth.keys``): a key the mapping does not have that is its ``kind``, or is followed by one
    it has, is a tag. The engineer sees the path they wrote, at the line they wrote it (the partner
    auth union made ``esop.yaml:6: inbound.rest.auth.keys`` read ``:4: …auth.api_key.keys``)."""
    out: list[Any] = []
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(node, yaml.MappingNode):
            keys = {k.value: v for k, v in node.value}
            kind = keys.get("kind")
            named = isinstance(kind, yaml.ScalarNode) and kind.value == str(part)
            if str(part) not in keys and (named or (i + 1 < len(parts) and str(parts[i + 1]) in keys)):
                i += 1  # a union tag: skip it
                continue
            node = keys.get(str(part))
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
        out.append(part)
        i += 1
    return tuple(out)


def validation_problems(path: Path | str, node: yaml.Node | None, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = without_union_tags(node, tuple(err["loc"]))
        line = line_of(node, loc)
        where = f"{path}:{line}" if line else str(path)
        problems.append(f"{where}: {format_loc(loc)}: {err['msg']}")
    return problems


def load_model(path: Path, model: type[M], *, context: dict[str, Any] | None = None) -> M:
    """Read ``path`` and validate it as ``model``; raise ConfigError naming file, line and key."""
    data, node = read_yaml(path)
    if data is None:
        data = {}
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(f"{path} is invalid", validation_problems(path, node, exc)) from exc


def load_dir(directory: Path, model: type[M], *, pattern: str = "*.yaml") -> dict[Path, M]:
    """Load every file of a folder; report every bad file at once, not just the first."""
    loaded: dict[Path, M] = {}
    problems: list[str] = []
    for path in sorted(directory.glob(pattern)) if directory.is_dir() else []:
        try:
            loaded[path] = load_model(path, model)
        except ConfigError as exc:
            problems.extend(exc.problems or [str(exc)])
    if problems:
        raise ConfigError(f"invalid configuration under {directory}", problems)
    return loaded
