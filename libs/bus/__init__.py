"""The one NATS JetStream wrapper: streams, publishing with trace context, durable pull consumers.

A consumer hands each fetched batch to its handler, which answers one Outcome
per message: ACK, or a delay after which JetStream redelivers it (a nak with
delay: JetStream itself holds the message until it is due). Handlers that work
message by message are wrapped with `each`: returning acks, raising `RetryLater`
naks with its delay.

A handler that fails is retried without end while the failure is an outage
(libs.errors.TRANSIENT: the database or the broker down or slow), after a short
pause each time, so an outage never loses a message. Any other failure says the
message itself cannot be handled (a value a database refuses, a payload over
the broker's limit, a bug): it is `Broken`, retried after growing delays
(HERALD_STAGE_RETRY_BACKOFF), then dead-lettered - published whole, with its
subject, consumer and the error, on herald.unprocessed.<consumer> in
HERALD_DEAD_LETTERS - and acked, so one bad message never holds a stage for
ever and is never dropped silently.

Many small records (delivery events, accepted messages) travel grouped: the
ones published on the same subject and in the same trace, in the same turn of
the event loop or while the previous such group awaits its PubAck, go out as
one message whose field 1 repeats them (`publish_grouped`), so a batch of work
costs one publish, not one per record. Records that carry their own trace
context (accepted messages) are grouped across traces too: concurrent Sends
share a publish.

Consumers have a rank (0 first). While a consumer has a batch in hand, work of
lower rank in the same process waits before its next publish and its next
batch (Precedence): the priority pipelines' critical messages never queue in
the event loop behind a marketing flood.
"""

import asyncio
import contextlib
import contextvars
import hashlib
import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final, Protocol

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    Header,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NoStreamResponseError, NotFoundError
from nats.js.kv import KeyValue
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter

from libs import subjects, telemetry
from libs.bus.interfaces import Bucket, Consumers, KeyValues, MessageBus, Notices, Publisher, Schedules, Streams
from libs.config import STAGE_RETRY_BACKOFF
from libs.errors import TRANSIENT, CannotStart
from libs.tls import NatsAuth

__all__ = [
    "ACK",
    "DAY",
    "MIN_SERVER_VERSION",
    "OUTAGE_RETRY_DELAY",
    "STREAMS",
    "BatchHandler",
    "Broken",
    "Bucket",
    "Bus",
    "BusCore",
    "Consumer",
    "Consumers",
    "Delivered",
    "Handler",
    "Incoming",
    "KeyValues",
    "MessageBus",
    "Notices",
    "Outcome",
    "Publisher",
    "RetryLater",
    "ScheduleChanged",
    "Scheduled",
    "Schedules",
    "Source",
    "Stream",
    "Streams",
    "each",
    "in_own_trace",
]

log = structlog.get_logger()
_tracer = telemetry.tracer("herald.bus")

DAY = 24 * 3600.0
# JetStream message schedules (Nats-Schedule: send_at, escalation steps, digest windows) came with nats-server 2.12;
# an older server takes the streams and never fires a schedule, so herald refuses it at start.
MIN_SERVER_VERSION = (2, 12)
# How long a publish waits for its PubAck (nats-py's JetStream default).
PUBACK_TIMEOUT = 5.0
# The status of a reply saying no stream took the subject.
NO_RESPONDERS = "503"


@dataclass(frozen=True)
class Stream:
    subjects: list[str]
    max_age: float
    # Holds schedule definitions (Nats-Schedule headers) that the server fires at their time.
    schedules: bool = False


# docs/architecture.md explains each.
STREAMS: dict[str, Stream] = {
    subjects.MESSAGES_STREAM: Stream(["herald.message.>"], 7 * DAY),
    subjects.DELIVERIES_STREAM: Stream(["herald.delivery.>"], 7 * DAY),
    subjects.EVENTS_STREAM: Stream(["herald.event.>"], 7 * DAY),
    subjects.DEAD_LETTERS_STREAM: Stream(["herald.dead.>", "herald.unprocessed.>"], 30 * DAY),
    # A definition waits here until its time, so the stream keeps messages longer than anything may be scheduled
    # ahead; what a definition fires carries its own TTL (SCHEDULE_FIRED_TTL).
    subjects.SCHEDULES_STREAM: Stream(["herald.schedule.>"], 400 * DAY, schedules=True),
}
SCHEDULE_FIRED_TTL = "168h"
# How long announce_asking waits for a listener's answer.
LISTENER_TIMEOUT = 1.0
# JetStream's error code for a publish whose Nats-Expected-Last-Subject-Sequence no longer holds.
WRONG_LAST_SEQUENCE = 10071
# What one grouped publish may weigh: NATS carries 1 MiB, and no single record is allowed over 512 KiB.
MAX_GROUP_BYTES = 768 * 1024
DUPLICATE_WINDOW = 600.0
STREAM_SETUP_ATTEMPTS = 3
# How many tenths of a second a new replicated KV bucket may take to elect its leader before it is used anyway.
LEADER_WAIT_ROUNDS = 100
# After an outage (TRANSIENT), a message is tried again this soon, for as long as the outage lasts.
OUTAGE_RETRY_DELAY = 2.0
# What a dead-lettered message's reason may hold of the error.
MAX_REASON_CHARS = 1000
UNPROCESSED = Counter(
    "herald_unprocessed_messages_total",
    "Messages a consumer could not handle after its last retry, dead-lettered on herald.unprocessed.<consumer>.",
    ["consumer"],
)


class RetryLater(Exception):
    """Raised by a handler: leave the message in the stream and deliver it again after `delay` seconds."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason)
        self.delay = delay


@dataclass(frozen=True)
class Scheduled:
    payload: bytes
    # Its sequence in HERALD_SCHEDULES, for replacing it by compare-and-set (Bus.schedule).
    sequence: int


class ScheduleChanged(Exception):
    """A schedule was replaced, fired or made by someone else since it was read."""


@dataclass(frozen=True)
class Incoming:
    subject: str
    data: bytes
    headers: dict[str, str]
    # 1 on the first delivery, 2 on the first redelivery, ...
    delivery_count: int
    # This message's consumer span, a child of the publisher's: work done for this message
    # runs under `active()`, so what it publishes or calls continues the message's trace.
    span: trace.Span
    # Its sequence in its stream: the same on every redelivery, unique within the stream.
    sequence: int

    def active(self) -> AbstractContextManager[trace.Span]:
        return trace.use_span(self.span, end_on_exit=False)


@dataclass(frozen=True)
class Broken:
    """A handler's outcome for a message it failed on for a reason other than an outage (see the module's
    docstring): retried after growing delays, then dead-lettered."""

    reason: str

    @classmethod
    def of(cls, error: BaseException) -> "Broken":
        return cls(f"{type(error).__name__}: {error}"[:MAX_REASON_CHARS])


def _failed(error: Exception, messages: list[Incoming], **where: object) -> "Outcome":
    """What the messages a handler raised `error` on get, the error logged and on each message's span: an outage is
    retried shortly, anything else is Broken. Called in the `except` block."""
    log.exception("handler failed; will retry", size=len(messages), **where)
    for incoming in messages:
        incoming.span.record_exception(error)
    return OUTAGE_RETRY_DELAY if isinstance(error, TRANSIENT) else Broken.of(error)


# None acks the message; a number naks it, to be redelivered after that many seconds; Broken, see above.
Outcome = float | Broken | None
ACK: Final = None
BatchHandler = Callable[[list[Incoming]], Awaitable[list[Outcome]]]
Handler = Callable[[Incoming], Awaitable[None]]


def each(handler: Handler) -> BatchHandler:
    """Run a per-message handler on every message of a batch concurrently."""

    async def one(incoming: Incoming) -> Outcome:
        with incoming.active():
            try:
                await handler(incoming)
            except RetryLater as later:
                return later.delay
            except Exception as e:
                return _failed(e, [incoming], subject=incoming.subject)
        return ACK

    async def run(batch: list[Incoming]) -> list[Outcome]:
        return list(await asyncio.gather(*(one(i) for i in batch)))

    return run


# The rank of the consumer whose work the current task does; other work (gRPC handlers) has the first rank.
_RANK: ContextVar[int] = ContextVar("herald_consumer_rank", default=0)


class Precedence:
    """Holds back lower-ranked work while higher-ranked batches are in hand in this process."""

    def __init__(self) -> None:
        self._in_hand: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}

    @contextlib.contextmanager
    def holding(self, rank: int) -> Iterator[None]:
        idle = self._idle.setdefault(rank, asyncio.Event())
        self._in_hand[rank] = self._in_hand.get(rank, 0) + 1
        idle.clear()
        try:
            yield
        finally:
            self._in_hand[rank] -= 1
            if not self._in_hand[rank]:
                idle.set()

    async def turn(self) -> None:
        """Return once no batch ranked above the current task's is in hand."""
        rank = _RANK.get()
        while busy := [above for above, count in self._in_hand.items() if count and above < rank]:
            await self._idle[busy[0]].wait()


def _grouped(records: Iterable[bytes]) -> bytes:
    """One message whose field 1 repeats `records` (serialized messages), without parsing them again: on the wire a
    repeated message field is its elements, each a length-delimited record of its field number."""
    return b"".join(_GROUPED_TAG + _varint(len(record)) + record for record in records)


# Field 1, wire type 2 (length-delimited).
_GROUPED_TAG = bytes([1 << 3 | 2])


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Records are grouped by subject and trace id; None: any trace (records that carry their own).
GroupKey = tuple[str, int | None]


@dataclass
class _Group:
    """Records waiting to be published together, with their ids, the future their publishers wait on, and the
    first publisher's context, which the group's publish continues (its trace)."""

    records: list[tuple[bytes, str]]
    done: asyncio.Future[None]
    context: contextvars.Context


@dataclass(frozen=True)
class Delivered:
    """One delivery of a stored message to a consumer, and how to settle it: None acks, a number naks it with that
    delay."""

    subject: str
    data: bytes
    headers: dict[str, str]
    delivery_count: int
    sequence: int
    settle: Callable[[float | None], Awaitable[None]]


class Source(Protocol):
    """Where a Consumer fetches its batches: a durable consumer of the broker."""

    async def fetch(self, batch: int) -> list[Delivered]:
        """Up to `batch` deliveries; none if nothing came within about a second."""
        ...

    async def lag(self) -> tuple[int, int]:
        """(messages not yet delivered, messages delivered and not yet acked)."""
        ...

    async def close(self) -> None: ...


# BusCore._store.
Store = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


class BusCore(ABC):
    """What a bus does whatever the broker under it: publishing with trace context and grouping, consumers that
    settle their handlers' outcomes, schedules written as JetStream's schedule headers. `Bus` runs it over NATS;
    the tests' MemoryBus (tests/helpers/memory_bus.py) over streams in memory with JetStream's semantics."""

    def __init__(self, retry_backoff: tuple[float, ...] = STAGE_RETRY_BACKOFF) -> None:
        self._retry_backoff = retry_backoff
        self._consumers: list[Consumer] = []
        self._precedence = Precedence()
        self._groups: dict[GroupKey, _Group] = {}
        self._in_flight: set[GroupKey] = set()
        self._sending: set[asyncio.Task[None]] = set()

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def _store(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Store the message and wait for the stream's PubAck, raising JetStream's errors."""

    @abstractmethod
    async def _pull(
        self, stream: str, durable: str, subject: str, *, ack_wait: float, max_deliver: int, max_ack_pending: int
    ) -> Source:
        """The durable consumer `durable` of `subject` in `stream`, created on first use."""

    async def publish(self, subject: str, payload: bytes, msg_id: str | None = None) -> None:
        """Publish and wait for the stream's ack: after this returns, the message is durable.

        `msg_id` lets JetStream drop a repeat of the same publish (after a crash and
        redelivery) within DUPLICATE_WINDOW.
        """
        await self._publish(subject, payload, {"Nats-Msg-Id": msg_id} if msg_id else {})

    async def turn(self) -> None:
        """Return once no batch ranked above the current task's consumer is in hand (Precedence): work that does
        much before its first publish waits here first."""
        await self._precedence.turn()

    async def publish_grouped(self, subject: str, *records: tuple[bytes, str], each_traced: bool = False) -> None:
        """Publish each (record, its id) as an element of a group (see the module's docstring); after this returns
        they are durable. `each_traced`: the records carry their own trace context, so they may share a group with
        other traces' records; the group's headers continue the trace of whichever publisher came first.

        A group's Nats-Msg-Id is its record's id when it holds one, else a digest of its records' ids: the same
        group published again is dropped by JetStream, while a different grouping of some of the same records
        (after a redelivery) is not, so consumers de-duplicate records by their own ids.
        """
        key = (subject, None if each_traced else trace.get_current_span().get_span_context().trace_id)
        group = self._groups.get(key)
        if group is None:
            loop = asyncio.get_running_loop()
            group = self._groups[key] = _Group([], loop.create_future(), contextvars.copy_context())
            if key not in self._in_flight:
                loop.call_soon(self._send_group, key)
        group.records += records
        await asyncio.shield(group.done)

    def _send_group(self, key: GroupKey) -> None:
        """Send the group gathered under `key`. While it is on its way, later records of the key gather in the
        next group, sent once this one is acked: one publish of the key in flight at a time, so records that
        arrive one per turn of the event loop (concurrent Sends) still share publishes under load, and a lone
        record waits for nobody."""
        group = self._groups.pop(key)
        self._in_flight.add(key)
        task = asyncio.create_task(self._publish_group(key, group), context=group.context)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish_group(self, key: GroupKey, group: _Group) -> None:
        try:
            await self._publish_parts(key[0], group)
        finally:
            self._in_flight.discard(key)
            if key in self._groups:
                self._send_group(key)

    async def _publish_parts(self, subject: str, group: _Group) -> None:
        parts: list[list[tuple[bytes, str]]] = [[]]
        size = 0
        for record, record_id in group.records:
            if parts[-1] and size + len(record) > MAX_GROUP_BYTES:
                parts.append([])
                size = 0
            parts[-1].append((record, record_id))
            size += len(record) + 8
        try:
            await asyncio.gather(
                *(
                    self._publish(subject, _grouped(r for r, _ in part), {"Nats-Msg-Id": _group_id(part)})
                    for part in parts
                )
            )
        except Exception as e:
            group.done.set_exception(e)
        else:
            group.done.set_result(None)

    async def schedule(
        self, subject: str, payload: bytes, at: datetime, target: str, *, replacing: int | None = None
    ) -> None:
        """Store `payload` under `subject` (in HERALD_SCHEDULES) for the server to publish to `target` at `at`.

        The subject names the schedule: publishing it again replaces it, purging it withdraws it. With
        `replacing`, only if the schedule is still the one of that sequence (`Scheduled.sequence`; 0 = there is
        none), else ScheduleChanged: compare-and-set, for schedules several processes add to.
        """
        # @at takes whole seconds: round up, so nothing fires before its time.
        whole = at.astimezone(UTC).replace(microsecond=0) + (timedelta(seconds=1) if at.microsecond else timedelta())
        stamp = whole.strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {
            "Nats-Schedule": f"@at {stamp}",
            "Nats-Schedule-Target": target,
            "Nats-Schedule-TTL": SCHEDULE_FIRED_TTL,
        }
        if replacing is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(replacing)
        try:
            await self._publish(subject, payload, headers)
        except APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE:
                raise ScheduleChanged(subject) from e
            raise

    async def _publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await self._precedence.turn()
        if not self.connected:
            # nats-py would hold the publish and send it once reconnected, long after this call gave up waiting for
            # its ack: a caller told it failed could then do it twice (an intake client retrying a Send that was
            # answered UNAVAILABLE). So it fails now, as the outage it is (libs.errors.TRANSIENT).
            raise nats.errors.ConnectionReconnectingError
        # A trace nobody records gets no span of its own here (a child of it would not be recorded either): its
        # context travels on, and a Send is spared a span's cost.
        producing = (
            _tracer.start_as_current_span(
                f"{subject} send",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": subject,
                },
            )
            if trace.get_current_span().is_recording()
            else contextlib.nullcontext()
        )
        with producing:
            telemetry.inject(headers)
            await self._store(subject, payload, headers)

    async def consume(
        self,
        stream: str,
        durable: str,
        subject: str,
        handler: BatchHandler,
        *,
        batch: int = 64,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
        rank: int = 0,
        max_pending: int = 1000,
        linger: float = 0.0,
    ) -> "Consumer":
        """A durable pull consumer handing `handler` batches of up to `batch` messages. `linger`: after a batch
        smaller than that, wait this long before fetching again, so the next gathers more - for a handler whose
        cost is per batch (a transaction) more than per message, at that much more delay."""
        source = await self._pull(
            stream,
            durable,
            subject,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max(max_pending, batch * 4),
        )
        consumer = Consumer(
            self._store, durable, source, handler, batch, rank, self._precedence, self._retry_backoff, linger
        )
        consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def stop_consumers(self) -> None:
        await asyncio.gather(*(c.stop() for c in self._consumers))

    async def consumer_lag(self) -> dict[str, tuple[int, int]]:
        """Per durable consumer of this process: (messages not yet handed to it, messages it holds unacked)."""
        lags = await asyncio.gather(*(c.lag() for c in self._consumers), return_exceptions=True)
        return {c.name: lag for c, lag in zip(self._consumers, lags, strict=True) if not isinstance(lag, BaseException)}


class Bus(BusCore):
    """The bus over NATS JetStream."""

    def __init__(
        self, nc: Client, js: JetStreamContext, replicas: int, retry_backoff: tuple[float, ...] = STAGE_RETRY_BACKOFF
    ) -> None:
        super().__init__(retry_backoff)
        self.nc = nc
        self.js = js
        self._replicas = replicas
        self._acks = _PubAcks(nc)

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        replicas: int = 1,
        retry_backoff: tuple[float, ...] = STAGE_RETRY_BACKOFF,
        auth: NatsAuth | None = None,
    ) -> "Bus":
        """`auth`: the credentials file and CA of HERALD_NATS_CREDS_FILE / HERALD_NATS_CA_FILE (libs/tls.py)."""

        async def on_error(e: Exception) -> None:
            log.warning("nats error", error=str(e))

        nc = await nats.connect(
            servers=url.split(","),
            name=name,
            error_cb=on_error,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            **(auth.connect_options() if auth else {}),
        )
        version = nc.connected_server_version
        if (version.major, version.minor) < MIN_SERVER_VERSION:
            await nc.close()
            raise CannotStart(
                f"nats-server {version.major}.{version.minor}.{version.patch} is too old:"
                f" herald needs {'.'.join(map(str, MIN_SERVER_VERSION))} or later (JetStream message schedules)"
            )
        bus = cls(nc, nc.jetstream(), replicas, retry_backoff)
        await bus._acks.open()
        return bus

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def _store(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await self._acks.publish(subject, payload, headers)

    async def _pull(
        self, stream: str, durable: str, subject: str, *, ack_wait: float, max_deliver: int, max_ack_pending: int
    ) -> Source:
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subject,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
        )
        return _PullSource(await self.js.pull_subscribe(subject, durable=durable, stream=stream, config=config))

    async def ensure_streams(self) -> None:
        """Create or update herald's streams; every binary calls it at start-up, so order does not matter."""
        for name, stream in STREAMS.items():
            config = StreamConfig(
                name=name,
                subjects=stream.subjects,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=stream.max_age,
                duplicate_window=DUPLICATE_WINDOW,
                num_replicas=self._replicas,
                allow_msg_schedules=stream.schedules or None,
                allow_msg_ttl=stream.schedules or None,
            )
            for attempt in range(1, STREAM_SETUP_ATTEMPTS + 1):
                try:
                    await self._put_stream(config)
                    break
                except NatsTimeout:  # a busy server (several binaries starting at once) answers late
                    if attempt == STREAM_SETUP_ATTEMPTS:
                        raise

    async def _put_stream(self, config: StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            await self.js.update_stream(config)

    async def announce(self, subject: str, payload: bytes = b"") -> None:
        """A core NATS notice to every process listening now; not stored, so listeners also re-read on a timer."""
        await self.nc.publish(subject, payload)

    async def announce_asking(self, subject: str, payload: bytes = b"") -> bool:
        """announce, and say whether any process was listening (each listener answers; no listener, and the
        server says so at once)."""
        try:
            await self.nc.request(subject, payload, timeout=LISTENER_TIMEOUT)
        except nats.errors.NoRespondersError:
            return False
        except nats.errors.TimeoutError:
            return True  # a listener too busy to answer in time still got the notice
        return True

    @asynccontextmanager
    async def notices(self, subject: str) -> AsyncIterator[asyncio.Queue[bytes]]:
        """The payloads of notices on `subject` (announce) while the block runs; announce_asking hears that
        this process listens."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_notice(msg: Msg) -> None:
            queue.put_nowait(msg.data)
            if msg.reply:
                await msg.respond(b"")

        subscription = await self.nc.subscribe(subject, cb=on_notice)
        try:
            yield queue
        finally:
            await subscription.unsubscribe()

    async def scheduled(self, subject: str) -> Scheduled | None:
        """The schedule `subject` names, or None if there is none (never made, fired, withdrawn)."""
        try:
            found = await self.js.get_last_msg(subjects.SCHEDULES_STREAM, subject)
        except NotFoundError:
            return None
        return Scheduled(found.data or b"", found.seq or 0)

    async def scheduled_under(self, pattern: str) -> dict[str, Scheduled]:
        """Every schedule under `pattern` (wildcards allowed), by subject."""
        info = await self.js.stream_info(subjects.SCHEDULES_STREAM, subjects_filter=pattern)
        found = {subject: await self.scheduled(subject) for subject in (info.state.subjects or {})}
        return {subject: schedule for subject, schedule in found.items() if schedule is not None}

    async def unschedule(self, pattern: str) -> None:
        """Withdraw the schedules under `pattern` (wildcards allowed)."""
        await self.js.purge_stream(subjects.SCHEDULES_STREAM, subject=pattern)

    async def key_value(self, bucket: str, *, ttl: float | None = None, memory: bool = False) -> KeyValue:
        """Open a KV bucket, creating it on first use (every replica may be first)."""
        try:
            kv = await self.js.key_value(bucket)
        except BucketNotFoundError:
            storage = StorageType.MEMORY if memory else StorageType.FILE
            kv = await self.js.create_key_value(
                KeyValueConfig(bucket=bucket, history=1, ttl=ttl, storage=storage, replicas=self._replicas)
            )
        await self._leader_of(f"KV_{bucket}")
        return kv

    async def _leader_of(self, stream: str) -> None:
        """Wait (a little) until a replicated stream has a leader: a bucket just created in a cluster answers
        writes only then, and a binary's first write at start-up must not fail for it ("no response from stream")."""
        for _ in range(LEADER_WAIT_ROUNDS):
            info = await self.js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                return
            await asyncio.sleep(0.1)

    async def subject_counts(self, stream: str) -> dict[str, int]:
        """How many messages `stream` holds on each of its subjects."""
        info = await self.js.stream_info(stream, subjects_filter=">")
        return dict(info.state.subjects or {})

    async def close(self) -> None:
        """Close after the consumers stopped. Every publish was already acked, so nothing is left to drain."""
        await self.stop_consumers()
        if not self.nc.is_closed:
            await self.nc.close()


class _PubAcks:
    """JetStream publishes awaiting their PubAck, answered on one wildcard reply subscription. What nats-py's
    `JetStreamContext.publish` does, without its cost per publish - random bytes drawn from the kernel for the
    reply subject and an `asyncio.wait_for` (a publish cost its process 54-64 us of CPU, now 31-41): here a
    counter names the reply and one timer bounds the wait. The same errors: TimeoutError, NoStreamResponseError,
    APIError."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}

    async def open(self) -> None:
        prefix = f"{self._nc.new_inbox()}."
        await self._nc.subscribe(f"{prefix}*", cb=self._answered)
        self._prefix = prefix

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish and wait for the stream's PubAck (PUBACK_TIMEOUT at most)."""
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        answer = self._waiting[token] = loop.create_future()
        timer = loop.call_later(PUBACK_TIMEOUT, _expire, answer)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            reply = await answer
        finally:
            timer.cancel()
            del self._waiting[token]
        if reply.headers and reply.headers.get(Header.STATUS) == NO_RESPONDERS:
            raise NoStreamResponseError
        if b'"error"' in reply.data:
            found = json.loads(reply.data)
            if "error" in found:
                raise APIError.from_error(found["error"])

    async def _answered(self, msg: Msg) -> None:
        answer = self._waiting.get(msg.subject[len(self._prefix) :])
        if answer is not None and not answer.done():
            answer.set_result(msg)


def _expire(answer: asyncio.Future[Msg]) -> None:
    if not answer.done():
        answer.set_exception(nats.errors.TimeoutError())


def _group_id(records: list[tuple[bytes, str]]) -> str:
    if len(records) == 1:
        return records[0][1]
    return hashlib.sha256("\n".join(record_id for _, record_id in records).encode()).hexdigest()[:40]


class Consumer:
    """Fetches batches from one durable pull consumer and settles every message with its handler's outcome."""

    def __init__(
        self,
        store: Store,
        name: str,
        source: Source,
        handler: BatchHandler,
        batch: int,
        rank: int,
        precedence: Precedence,
        retry_backoff: tuple[float, ...],
        linger: float,
    ) -> None:
        self.name = name
        self._store = store
        self._source = source
        self._handler = handler
        self._batch = batch
        self._rank = rank
        self._precedence = precedence
        self._retry_backoff = retry_backoff
        self._linger = linger
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def lag(self) -> tuple[int, int]:
        return await self._source.lag()

    async def stop(self) -> None:
        """Stop fetching; the batch in hand finishes (each message acked or nak'ed) before this returns."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
            with contextlib.suppress(Exception):
                await self._source.close()

    async def _run(self) -> None:
        _RANK.set(self._rank)  # this task's own context, inherited by everything the handler starts
        while not self._stopping.is_set():
            await self._precedence.turn()
            try:
                delivered = await self._source.fetch(self._batch)
            except Exception as e:  # connection blips: the client reconnects by itself
                log.warning("fetch failed", consumer=self.name, error=repr(e))
                await asyncio.sleep(0.5)
                continue
            if not delivered:
                continue
            with self._precedence.holding(self._rank):
                await self._handle(delivered)
            if self._linger and len(delivered) < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._linger)

    async def _handle(self, delivered: list[Delivered]) -> None:
        batch = [self._incoming(d) for d in delivered]
        try:
            outcomes = await self._handler(batch)
        except Exception as e:
            if len(batch) > 1 and not isinstance(e, TRANSIENT):
                # One bad message must not take the rest of its batch through retries and into the dead letters
                # with it: each is handled again on its own (handlers are idempotent, as redelivery needs).
                outcomes = [await self._alone(incoming) for incoming in batch]
            else:
                outcomes = [_failed(e, batch, consumer=self.name)] * len(batch)
        for one, incoming, outcome in zip(delivered, batch, outcomes, strict=True):
            try:
                await self._settle(one, incoming, outcome)
            except Exception as e:  # the connection dropped: JetStream redelivers after ack_wait
                log.warning("could not settle message", consumer=self.name, error=repr(e))
            incoming.span.end()

    async def _alone(self, incoming: Incoming) -> Outcome:
        try:
            [outcome] = await self._handler([incoming])
        except Exception as e:
            return _failed(e, [incoming], consumer=self.name, subject=incoming.subject)
        return outcome

    async def _settle(self, delivered: Delivered, incoming: Incoming, outcome: Outcome) -> None:
        if outcome is ACK or not isinstance(outcome, Broken):
            await delivered.settle(outcome)
        elif incoming.delivery_count <= len(self._retry_backoff):
            await delivered.settle(self._retry_backoff[incoming.delivery_count - 1])
        else:
            await self._dead_letter(incoming, outcome)
            await delivered.settle(ACK)

    async def _dead_letter(self, incoming: Incoming, broken: Broken) -> None:
        """Keep a message no retry could handle where an operator finds it, before it is acked (a failed publish
        leaves it unacked, to be redelivered)."""
        headers = {
            **incoming.headers,
            "Herald-Subject": incoming.subject,
            "Herald-Consumer": self.name,
            "Herald-Deliveries": str(incoming.delivery_count),
            "Herald-Reason": " ".join(broken.reason.split()),  # a header is one line
        }
        headers.pop("Nats-Msg-Id", None)
        await self._store(subjects.unprocessed(self.name), incoming.data, headers)
        UNPROCESSED.labels(self.name).inc()
        log.error(
            "dead-lettered a message no retry could handle",
            consumer=self.name,
            subject=incoming.subject,
            deliveries=incoming.delivery_count,
            reason=broken.reason,
        )

    def _incoming(self, delivered: Delivered) -> Incoming:
        span = _process_span(delivered.subject, telemetry.extract(delivered.headers))
        span.set_attribute("messaging.consumer.group.name", self.name)
        return Incoming(
            delivered.subject, delivered.data, delivered.headers, delivered.delivery_count, span, delivered.sequence
        )


class _PullSource:
    """A JetStream pull subscription as a Consumer's Source."""

    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self._sub = sub

    async def fetch(self, batch: int) -> list[Delivered]:
        try:
            msgs = await self._sub.fetch(batch, timeout=1.0)
        except (NatsTimeout, TimeoutError):
            return []
        return [
            Delivered(
                m.subject,
                m.data,
                dict(m.headers or {}),
                m.metadata.num_delivered,
                m.metadata.sequence.stream,
                partial(_settle, m),
            )
            for m in msgs
        ]

    async def lag(self) -> tuple[int, int]:
        info = await self._sub.consumer_info()
        return info.num_pending or 0, info.num_ack_pending or 0

    async def close(self) -> None:
        await self._sub.unsubscribe()


async def _settle(msg: Msg, delay: float | None) -> None:
    if delay is None:
        await msg.ack()
    else:
        await msg.nak(delay=delay)


def _process_span(subject: str, parent: otel_context.Context) -> trace.Span:
    """A consumer's span for work on what arrived on `subject`, a child of the publisher's span in `parent`."""
    return _tracer.start_span(
        f"{subject} process",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
        },
    )


def in_own_trace(incoming: Incoming, traceparent: str) -> AbstractContextManager[trace.Span]:
    """Where the work for one record of `incoming` runs. A record that carries its own trace context
    (`publish_grouped(each_traced=True)`) from another trace than the group's gets a consumer span of its own
    there; one of the group's trace, or with none, runs in `incoming`'s span."""
    if traceparent:
        parent = telemetry.extract({"traceparent": traceparent})
        own = trace.get_current_span(parent).get_span_context()
        if own.is_valid and own.trace_id != incoming.span.get_span_context().trace_id:
            return trace.use_span(_process_span(incoming.subject, parent), end_on_exit=True)
    return trace.use_span(incoming.span, end_on_exit=False)
