"""What the layers above the core may ask of the running process — without importing it.

The composition root (``app/runtime.py``) builds one :class:`~app.runtime.Runtime` per process and
hands it to connectors, routes, flows and the web handlers. They type against :class:`Services`,
a protocol defined here in the core, so none of them imports the root (the import-linter
contracts in ``pyproject.toml`` forbid it) and the root alone wires everything.

Per-process objects a layer adds at run time (the loaded blueprints, the flow runner, the
delivery agents) are kept under typed keys (:class:`ServiceKey`, the ``aiohttp.web.AppKey``
pattern), not in an untyped dict: ``services.put(BLUEPRINTS, bps)`` / ``services.get(BLUEPRINTS)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from aiohttp import web

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from hub.intake import Intake
    from hub.kafka import BrokerWatch, EnvelopeProducer
    from hub.partners import Partner
    from hub.settings import Settings

T = TypeVar("T")


class ServiceKey(Generic[T]):
    """A typed name for a per-process object (one key object per kind, defined by its owner)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ServiceKey({self.name!r})"


class Services(Protocol):
    """The process services every layer may use (implemented by ``app.runtime.Runtime``)."""

    settings: Settings
    partners: dict[str, Partner]
    producer: EnvelopeProducer
    db: AsyncIOMotorDatabase[Any] | None
    intake: Intake | None
    connector_tables: dict[str, dict[str, Any]]
    broker: BrokerWatch
    #: topics outside ``topic_names()`` a wiped broker must get back (faust's own), name → partitions
    extra_topics: dict[str, int]

    async def ensure_topic(self, name: str) -> None: ...

    def get(self, key: ServiceKey[T]) -> T | None: ...

    def put(self, key: ServiceKey[T], value: T) -> T: ...


class ServiceSlots:
    """The typed-key store :class:`Services` implementations share (mixed into the runtime)."""

    def __init__(self) -> None:
        self._slots: dict[ServiceKey[Any], Any] = {}

    def get(self, key: ServiceKey[T]) -> T | None:
        return cast("T | None", self._slots.get(key))

    def put(self, key: ServiceKey[T], value: T) -> T:
        self._slots[key] = value
        return value


SERVICES: web.AppKey[Services] = web.AppKey("services")
"""Where the web app keeps the process services (every HTTP handler of every layer reads this)."""
