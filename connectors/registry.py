"""The registry of connectors by name: routes and delivery agents look connectors up here,
never with ``if protocol == …``. Registration happens at import of each connector package
(``connectors/<proto>/__init__.py``); the registry is frozen when the runtime starts
(``app/runtime.py``), so what a running hub can build is fixed — a late registration raises.

Every factory has the one signature ``factory(config, context)`` (``connectors/base.py``); it is
checked when the factory registers, so a connector with another signature never gets in, and
``new_source`` / ``new_sink`` call it the same way for every protocol.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from hub.errors import ConfigError, HubError

if TYPE_CHECKING:
    from connectors.base import Sink, Source
    from connectors.context import ConnectorContext

BUILTIN_PACKAGES = ("connectors.rest", "connectors.soap", "connectors.sftp", "connectors.amqp", "connectors.kafka")
F = TypeVar("F", bound=Callable[..., Any])


class RegistryError(HubError):
    """A connector registered wrongly: twice, after the freeze, or with another factory signature."""


@dataclass(frozen=True)
class Registration:
    name: str
    kind: str  # "source" | "sink"
    config: type[BaseModel]
    factory: Callable[[Any, ConnectorContext], Any]
    description: str


def check_factory(kind: str, name: str, factory: Callable[..., Any]) -> None:
    """The factory must take exactly ``(config, context)`` positionally and nothing else required."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{kind} {name!r}: factory has no inspectable signature ({exc})") from None
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_kw = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(params) != 2 or required_kw or any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
        raise RegistryError(f"{kind} {name!r}: factory must be factory(config, context), not {name}{sig}")


class Registry:
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Registration] = {}
        self._frozen = False

    @property
    def frozen(self) -> bool:
        return self._frozen

    def _add(self, kind: str, name: str, config: type[BaseModel], description: str) -> Callable[[F], F]:
        def deco(factory: F) -> F:
            if self._frozen:
                raise RegistryError(f"connector registry is frozen (the runtime started); cannot add {kind} {name!r}")
            key = (kind, name)
            if key in self._items and self._items[key].factory is not factory:
                raise RegistryError(f"{kind} {name!r} registered twice")
            check_factory(kind, name, factory)
            self._items[key] = Registration(name, kind, config, factory, description)
            return factory

        return deco

    def source(self, name: str, config: type[BaseModel], description: str = "") -> Callable[[F], F]:
        """Class decorator: register an inbound connector under ``name``."""
        return self._add("source", name, config, description)

    def sink(self, name: str, config: type[BaseModel], description: str = "") -> Callable[[F], F]:
        """Class decorator: register an outbound connector under ``name``."""
        return self._add("sink", name, config, description)

    def get(self, kind: str, name: str) -> Registration:
        load_builtins()
        try:
            return self._items[(kind, name)]
        except KeyError:
            known = ", ".join(sorted(n for k, n in self._items if k == kind)) or "none"
            raise ConfigError(f"unknown {kind} connector {name!r} (known: {known})") from None

    def new_source(self, name: str, config: Any, context: ConnectorContext) -> Source:
        """Build the source registered as ``name``: ``factory(config, context)``."""
        source: Source = self.get("source", name).factory(config, context)
        return source

    def new_sink(self, name: str, config: Any, context: ConnectorContext) -> Sink:
        """Build the sink registered as ``name``: ``factory(config, context)``."""
        sink: Sink = self.get("sink", name).factory(config, context)
        return sink

    def names(self, kind: str) -> list[str]:
        load_builtins()
        return sorted(n for k, n in self._items if k == kind)

    def freeze(self) -> None:
        """No registration after this (the built-in connectors are loaded first)."""
        if self is registry:
            load_builtins()
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
