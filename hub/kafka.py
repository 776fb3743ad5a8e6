"""Kafka client settings and helpers — the single place the tansu broker workarounds live.

Why the workarounds (see ../shared/INFRA.md, measured on the embedded tansu broker):

* tansu answers ListOffsets ("latest offset") wrongly when a record batch holds more than one
  record. Faust table recovery then silently loses counts, and anything reading end offsets is
  wrong. With ``kafka_exact_offsets`` (default on for the embedded broker) producers whose end
  offsets matter put **one record per batch** (faust ``producer_max_batch_size=1``, aiokafka
  ``max_batch_size=1``). Turn it off (``HUB_KAFKA_EXACT_OFFSETS=false``) on a real Kafka cluster.
* Faust's default session timeout makes a worker (re)start take 30–110 s against tansu; a 4 s
  session timeout with a 1 s heartbeat brings it to ~3.5 s with correct recovery.
* tansu keeps topics in memory: a broker restart wipes every topic and committed offset; clients
  that cached the old metadata get UnknownTopicOrPartition, and a metadata request naming a missing
  topic auto-creates it with the broker's default partitions. :class:`BrokerWatch` notices the wipe
  (a marker topic nobody else names is gone), re-creates our topics and bumps a *generation*; the
  flow engine then re-derives all pending work from MongoDB (flows/agents.py), and
  :class:`FaustWipeGuard` makes faust's consumer start the new topics at offset 0 — left alone it
  commits its old offsets onto the new, empty partitions and then skips every record below them.
* While the broker is away aiokafka and faust log the same few errors many times a second (~48
  ERROR lines/s measured, mostly ``Unable connect to node`` and ``OffsetCommit failed``):
  :class:`RateLimitFilter` lets each distinct message through once per window, with a count.

Every write that answers a partner uses ``acks="all"``: the partner hears "accepted" only once
the envelope is durable on the broker — on a cluster, on ``min.insync.replicas`` brokers of the
``kafka_replication_factor`` the hub creates its topics with (docs/deploy.md). Hard-coded
replication factor 1 was wrong there: on a cluster whose default ``min.insync.replicas`` is 2, Kafka
refuses every acks=all write to such a topic (NOT_ENOUGH_REPLICAS: one replica is fewer than two).

Every Kafka client the hub opens on its own cluster (producers, consumers, admin clients, faust)
takes its connection from :func:`client_options` (faust: :func:`faust_credentials`), so TLS and
SASL (``HUB_KAFKA_SECURITY_PROTOCOL`` …) reach all of them; tests/unit/test_kafka_security.py fails
when a client is constructed any other way.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from hub.envelope import Envelope
from hub.errors import BrokerUnavailable
from hub.settings import Settings

log = logging.getLogger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the hub's own brokers (``HUB_KAFKA_SSL_*``), None without TLS. Built by
    aiokafka's helper (``ssl.create_default_context``): the CA file, else the system's CAs; the client
    certificate for mutual TLS; hostname checking unless turned off (production refuses that)."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    if not settings.kafka_ssl_check_hostname:
        context.check_hostname = False  # the certificate is still verified against the CA
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection kwargs of every aiokafka client on the hub's own cluster (producer, consumer,
    admin): bootstrap servers, security protocol, TLS context and SASL credentials. The one place
    they are made; the password leaves its SecretStr only here."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # the settings model refuses SASL without one
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return options


def faust_credentials(settings: Settings) -> Any:
    """faust's ``broker_credentials`` for the same connection as :func:`client_options` (faust turns
    them into the same aiokafka kwargs for its producer, consumers and admin client), None for
    PLAINTEXT."""
    import faust

    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None
        return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                     password=settings.kafka_sasl_password.get_secret_value(),
                                     ssl_context=context, mechanism=settings.kafka_sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def tls_failure(settings: Settings, timeout: float = 3.0) -> str | None:
    """Why a TLS handshake with the first bootstrap server fails (``certificate verify failed: …``), or
    None (no TLS, or it succeeds). aiokafka reports a refused handshake only as "Unable to bootstrap",
    the TLS reason in a log line: this puts it into the error an operator sees."""
    context = ssl_context(settings)
    if context is None:
        return None
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port), ssl=context, server_hostname=host.strip("[]")),
            timeout)
    except ssl.SSLCertVerificationError as exc:  # the broker's certificate: untrusted CA, wrong host name
        return f"TLS handshake with {host}:{port} failed: certificate verify failed: {exc.verify_message}"
    except ssl.SSLError as exc:  # e.g. the broker wants a client certificate, or speaks no TLS
        return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"
    except (OSError, TimeoutError, ValueError):
        return None
    writer.close()
    return None


def producer_config(settings: Settings, *, exact_offsets: bool = False) -> dict[str, Any]:
    """aiokafka producer kwargs. ``exact_offsets``: this producer's end offsets are read later."""
    cfg: dict[str, Any] = {
        **client_options(settings),
        "acks": "all",
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "linger_ms": 1,
        "client_id": f"{settings.worker_id}-producer",
    }
    if exact_offsets and settings.kafka_exact_offsets:
        cfg["max_batch_size"] = 1  # tansu ListOffsets bug: one record per batch
    if settings.kafka_idempotent:
        cfg["enable_idempotence"] = True  # a retried write is stored once (needs acks=all, set above)
    return cfg


def topic_configs(settings: Settings) -> dict[str, str]:
    """Per-topic configuration the hub sets on the topics it creates (``min.insync.replicas``)."""
    if settings.kafka_min_insync_replicas is None:
        return {}
    return {"min.insync.replicas": str(settings.kafka_min_insync_replicas)}


def faust_config(settings: Settings) -> dict[str, Any]:
    """faust.App settings for this broker (workarounds explained in the module docstring)."""
    cfg: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka_bootstrap.replace(',', ';kafka://')}",
        "broker_session_timeout": 4,
        "broker_heartbeat_interval": 1,
        "broker_request_timeout": max(settings.kafka_request_timeout_ms / 1000, 5),
        "producer_acks": -1,
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.kafka_replication_factor,
        "web_enabled": False,
        "datadir": str(settings.data_dir / "faust" / settings.worker_id),
        "consumer_auto_offset_reset": "earliest",
        # events read ahead per agent (faust's default 4096): with a backlog (a file of orders),
        # every agent held thousands of ~3 KB events in memory; 512 still covers the engine's
        # 64 concurrent orders many times over (issue 8, item 5)
        "stream_buffer_maxsize": STREAM_BUFFER_MAXSIZE,
    }
    credentials = faust_credentials(settings)
    if credentials is not None:
        cfg["broker_credentials"] = credentials
    if settings.kafka_exact_offsets:
        cfg["producer_max_batch_size"] = 1  # tansu ListOffsets bug, see module docstring
    return cfg


FAUST_FETCH_MAX_WAIT_MS = 100
STREAM_BUFFER_MAXSIZE = 512


def shorten_faust_fetch_wait(max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS) -> None:
    """tansu answers a fetch only when ``fetch_max_wait_ms`` expires (it does not wake on new data),
    and faust hard-codes 1500 ms: measured ~750 ms per hop on average, ~10 s per internet-line order.
    Clamp the wait of faust's worker consumer (idempotent; affects only consumers faust creates)."""
    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    if getattr(driver.aiokafka, "_hub_fetch_wait", None) is not None:
        return

    class _Consumer(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka ships no types: its class is Any
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("fetch_max_wait_ms", 0) > max_wait_ms:
                kwargs["fetch_max_wait_ms"] = max_wait_ms
            super().__init__(*args, **kwargs)

    class _Shim:
        _hub_fetch_wait: int

        def __getattr__(self, name: str) -> Any:
            return _Consumer if name == "AIOKafkaConsumer" else getattr(aiokafka, name)

    shim = _Shim()
    shim._hub_fetch_wait = max_wait_ms
    driver.aiokafka = shim


async def ensure_topics(settings: Settings, names: Iterable[str], partitions: int | None = None) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=settings.kafka_request_timeout_ms)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions or settings.topic_partitions,
                                 replication_factor=settings.kafka_replication_factor,
                                 topic_configs=topic_configs(settings))
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", ", ".join(missing))
    finally:
        await admin.close()


class EnvelopeProducer:
    """Writes envelopes to Kafka with acks=all; failures become BrokerUnavailable.

    One producer per process; ``send`` returns only once the broker acknowledged the write, so the
    caller may then answer its partner (or ack its file / queue message).
    """

    def __init__(self, settings: Settings, *, exact_offsets: bool = False) -> None:
        self._settings = settings
        self._exact = exact_offsets
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(**producer_config(self._settings, exact_offsets=self._exact))
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                why = await tls_failure(self._settings)
                raise BrokerUnavailable(f"Kafka at {self._settings.kafka_bootstrap} unreachable: {why or exc}") from exc
            self._producer = producer

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    async def topics(self) -> set[str]:
        """Names of the topics the broker reports (a fresh metadata request)."""
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        metadata = await self._producer.client.fetch_all_metadata()
        return set(metadata.topics())

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when the broker answers a metadata request."""
        try:
            if self._producer is None:
                await asyncio.wait_for(self.start(), timeout)
            assert self._producer is not None
            return bool(await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout))
        except Exception:
            return False

    async def send(self, topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        await self.send_raw(
            topic, envelope.kafka_value(), key=envelope.kafka_key(), headers=envelope.kafka_headers(), timeout=timeout
        )

    async def send_many(self, topic: str, envelopes: list[Envelope], *, timeout: float | None = None) -> None:
        """Produce a batch pipelined (enqueue all, then await every ack): ~8x the rate of gathering
        ``send`` calls on the embedded broker. Returns once *all* are acknowledged (acks=all)."""
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        limit = timeout if timeout is not None else self._settings.kafka_request_timeout_ms / 1000 + 1
        try:
            futures = [
                await self._producer.send(topic, e.kafka_value(), key=e.kafka_key(), headers=e.kafka_headers())
                for e in envelopes
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=limit)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"Kafka did not acknowledge a batch to {topic}: {exc!r}") from exc

    async def send_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timeout: float | None = None,
    ) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        limit = timeout if timeout is not None else self._settings.kafka_request_timeout_ms / 1000 + 1
        try:
            fut = await asyncio.wait_for(
                self._producer.send(topic, value, key=key, headers=headers), timeout=limit
            )
            await asyncio.wait_for(fut, timeout=limit)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"Kafka did not acknowledge the write to {topic}: {exc!r}") from exc


class BrokerWatch:
    """Is the broker usable, and did it lose our topics? One per process (``Runtime.broker``).

    ``check`` asks for the cluster metadata through the shared producer: no answer ⇒ down. A wipe
    (tansu restarted) is told by a *marker* topic this watch creates and nobody else asks for by
    name: tansu auto-creates a topic when a client asks for its metadata by name (faust's consumer
    and every producer do, with the broker's default partitions), so "our topics are missing" alone
    can miss a wipe. On a wipe the ``on_wipe`` callbacks run first (faust's consumer must forget its
    offsets: :class:`FaustWipeGuard`), then the missing topics are created and ``generation`` goes
    up, which tells the flow engine to re-send everything pending. ``run`` never raises.
    """

    def __init__(self, settings: Settings, producer: EnvelopeProducer,
                 wanted: Callable[[], dict[str, int]], *, interval: float = 1.0) -> None:
        self._settings = settings
        self._producer = producer
        self._wanted = wanted  # topic name → partitions
        self.marker = f"{settings.topic_prefix}.__hub-broker-epoch"
        self.interval = interval
        self.up = False
        self.generation = 0  # bumped each time the broker was found wiped
        self.last_error: str | None = None
        self.on_wipe: list[Callable[[], None]] = []
        self.on_stop: list[Callable[[], None]] = []  # run when the watch is cancelled (the runtime stops)
        self._marker_seen = False
        self._lock = asyncio.Lock()

    async def check(self, timeout: float = 2.0) -> bool:
        async with self._lock:
            try:
                present = await asyncio.wait_for(self._producer.topics(), timeout)
            except Exception as exc:
                self._down(f"no metadata: {type(exc).__name__}: {exc}"[:200])
                return False
            wanted = {**self._wanted(), self.marker: 1}
            missing = {n: p for n, p in wanted.items() if n not in present}
            if self._marker_seen and self.marker not in present:
                self._wiped(len(missing))
            if missing:
                self._down(f"topics missing: {', '.join(sorted(missing)[:5])}{'…' if len(missing) > 5 else ''}")
                try:
                    for parts in sorted(set(missing.values())):
                        await asyncio.wait_for(
                            ensure_topics(self._settings, [n for n, p in missing.items() if p == parts], parts),
                            timeout + 3)
                except Exception as exc:
                    self._down(f"topics not created: {type(exc).__name__}: {exc}"[:200])
                    return False
            self._marker_seen = True
            if not self.up:
                log.info("Kafka usable at %s (generation %d)", self._settings.kafka_bootstrap, self.generation)
            self.up = True
            self.last_error = None
            return True

    def _wiped(self, missing: int) -> None:
        self.generation += 1
        self._marker_seen = False
        log.warning("Kafka lost its topics (broker restarted?): %d of ours missing; generation %d, creating "
                    "them again", missing, self.generation)
        for callback in self.on_wipe:
            try:
                callback()
            except Exception:
                log.exception("broker wipe callback %r failed", callback)

    def _down(self, why: str) -> None:
        if self.up:
            log.warning("Kafka not usable: %s", why)
        self.up = False
        self.last_error = why

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"generation": self.generation}
        if self.last_error:
            out["error"] = self.last_error
        return out

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.check()
                except Exception as exc:  # never let the watch die
                    log.warning("broker check failed: %r", exc)
                await asyncio.sleep(self.interval)
        finally:
            for callback in self.on_stop:
                callback()


class FaustWipeGuard:
    """faust's consumer after a wiped broker: start the new topics at offset 0.

    Measured against tansu: after a restart the new topics start at offset 0 again, but faust's
    consumer still holds the old ones — acked offsets of events in flight, read offsets (it drops
    any record below them), aiokafka fetch positions — and commits them as soon as the topics exist
    again (an offset-6 commit on an empty partition was seen 1 s after the wipe). The rejoin then
    seeks to that commit and every record below it is skipped: accepted orders and call results
    never reach the engine. So, on a wipe: commits are held, in-flight messages are neutralised and
    the bookkeeping cleared; after the next assignment every partition is sought to 0 (re-reading a
    few records is harmless: each event is applied once), and commits resume.
    """

    FALLBACK_S = 20.0  # no rebalance after the wipe (the rejoin finished first): reset anyway

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pending = False
        # the fallback's timer and task are owned here: kept (a task nobody references can be
        # collected mid-run), replaced by the next wipe's, cancelled when the broker watch stops
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, watch: BrokerWatch) -> None:
        watch.on_wipe.append(self.on_wipe)
        watch.on_stop.append(self.close)

    def on_wipe(self) -> None:
        consumer = self.app.consumer
        self._install(consumer)
        self.pending = True
        self._forget(consumer)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.FALLBACK_S, self._start_fallback)

    def _start_fallback(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._fallback(), name="faust-wipe-fallback")

    def close(self) -> None:
        """Cancel a pending fallback (the runtime is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _install(self, consumer: Any) -> None:
        if getattr(consumer, "_hub_wipe_guard", None) is self:
            return
        commit, perform_seek = consumer._commit, consumer.perform_seek

        async def guarded_commit(offsets: Any) -> bool:
            if self.pending:  # offsets of the wiped topics: meaningless (harmful) on the new ones
                return False
            return bool(await commit(offsets))

        async def seek_after_wipe() -> None:
            await perform_seek()
            if self.pending:
                await self._reset(consumer)

        consumer._commit = guarded_commit
        consumer.perform_seek = seek_after_wipe
        consumer._hub_wipe_guard = self

    @staticmethod
    def _forget(consumer: Any) -> None:
        for message in list(consumer._unacked_messages):
            message.acked = True  # its ack must not be recorded: that offset belongs to the wiped topic
        for table in (consumer._acked, consumer._acked_index, consumer._read_offset, consumer._committed_offset,
                      consumer._gap):
            table.clear()
        consumer._n_acked = 0

    async def _reset(self, consumer: Any) -> None:
        self._forget(consumer)
        assigned = sorted(consumer.assignment())
        for tp in assigned:
            await consumer.seek(tp, 0)
        self.pending = False
        log.warning("consumer restarted at offset 0 on %d partition(s) of the re-created topics", len(assigned))

    async def _fallback(self) -> None:
        if self.pending:
            try:
                await self._reset(self.app.consumer)
            except Exception:
                log.exception("consumer reset after the broker wipe failed")


class RateLimitFilter(logging.Filter):
    """Lets each distinct WARNING+ message of the Kafka client loggers through once per ``window_s``.

    "Distinct" is logger + level + message template (before %-formatting), so "Unable connect to
    node %s: %s" repeated for every retry counts once; the next one shown after the window says how
    many were held back. Other loggers (the hub's own) pass untouched.
    """

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka", "faust", "mode", "opentelemetry"),
                 window_s: float = 10.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key → [window start, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg)[:160])
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.window_s:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg = f"{record.msg} [{int(entry[1])} more like this in the last {now - entry[0]:.0f}s not logged]"
        if len(self._seen) > 2000:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
        self._seen[key] = [now, 0]
        return True


def limit_client_log_rate(window_s: float = 10.0) -> RateLimitFilter:
    """Install :class:`RateLimitFilter` on every root handler (idempotent). Called once logging is
    configured (faust/mode's worker sets up its own handlers when it starts)."""
    root = logging.getLogger()
    existing = next((f for h in root.handlers for f in h.filters if isinstance(f, RateLimitFilter)), None)
    flt = existing or RateLimitFilter(window_s=window_s)
    for handler in root.handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
    return flt
