"""The registry of connectors by name: routes and delivery agents look connectors up here,
never with ``if protocol == …``. Registration happens at import of each connector package
(``connectors/<proto>/__init__.py``); the registry is frozen once a worker starts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hub.errors import ConfigError

BUILTIN_PACKAGES = ("connectors.rest", "connectors.soap", "connectors.sftp", "connectors.amqp", "connectors.kafka")


@dataclass(frozen=True)
class Registration:
    name: str
    kind: str  # "source" | "sink"
    config: type[BaseModel]
    factory: Any
    description: str


class Registry:
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Registration] = {}
        self._frozen = False

    def _add(self, kind: str, name: str, config: type[BaseModel], description: str):  # type: ignore[no-untyped-def]
        def deco(factory: Any) -> Any:
            if self._frozen:
                raise RuntimeError(f"connector registry is frozen; cannot add {kind} {name!r}")
            key = (kind, name)
            if key in self._items and self._items[key].factory is not factory:
                raise RuntimeError(f"{kind} {name!r} registered twice")
            self._items[key] = Registration(name, kind, config, factory, description)
            return factory

        return deco

    def source(self, name: str, config: type[BaseModel], description: str = ""):  # type: ignore[no-untyped-def]
        """Class decorator: register an inbound connector under ``name``."""
        return self._add("source", name, config, description)

    def sink(self, name: str, config: type[BaseModel], description: str = ""):  # type: ignore[no-untyped-def]
        """Class decorator: register an outbound connector under ``name``."""
        return self._add("sink", name, config, description)

    def get(self, kind: str, name: str) -> Registration:
        load_builtins()
        try:
            return self._items[(kind, name)]
        except KeyError:
            known = ", ".join(sorted(n for k, n in self._items if k == kind)) or "none"
            raise ConfigError(f"unknown {kind} connector {name!r} (known: {known})") from None

    def names(self, kind: str) -> list[str]:
        load_builtins()
        return sorted(n for k, n in self._items if k == kind)

    def freeze(self) -> None:
        self._frozen = True


registry = Registry()
_loaded = False


def load_builtins() -> None:
    """Import the connector packages that ship with the hub (each registers itself)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for pkg in BUILTIN_PACKAGES:
        try:
            importlib.import_module(pkg)
        except ModuleNotFoundError as exc:
            if exc.name != pkg:
                raise
