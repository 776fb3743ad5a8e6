"""Named Python transforms: the escape hatch when declarative mapping is not enough.

A route names one (``transform.python: boss_product_codes``); the function receives the payload
after the declarative mapping and returns the new payload (or raises ValueError with a reason,
which rejects the message like any validation error). Registration is explicit, by name::

    @python_transform("boss_product_codes")
    def boss_product_codes(payload: dict) -> dict: ...

Modules with transforms are listed in :data:`MODULES` and imported on first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from hub.errors import ConfigError

Payload = dict[str, Any]
TransformFn = Callable[[Payload], Payload]

MODULES = ("transforms.builtin",)
_REGISTRY: dict[str, TransformFn] = {}
_loaded = False


def python_transform(name: str) -> Callable[[TransformFn], TransformFn]:
    def deco(fn: TransformFn) -> TransformFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise RuntimeError(f"python transform {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in MODULES:
            importlib.import_module(mod)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> TransformFn:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown python transform {name!r} (known: {', '.join(names()) or 'none'})") from None
