"""The bus's part that does not depend on the broker."""

import asyncio
import contextvars
from abc import ABC, abstractmethod
from datetime import datetime

import nats
import nats.errors
from nats.js.errors import APIError
from opentelemetry import trace

from herald.libs import telemetry
from herald.libs.bus.consuming import Consumer, Source
from herald.libs.bus.grouping import MAX_GROUP_BYTES, MAX_GROUP_RECORDS, Group, GroupKey, group_headers, grouped
from herald.libs.bus.handlers import BatchHandler
from herald.libs.bus.precedence import Precedence
from herald.libs.bus.schedules import WRONG_LAST_SEQUENCE, ScheduleChanged, schedule_headers
from herald.libs.bus.tracing import producing
from herald.libs.config import STAGE_RETRY_BACKOFF


class BusCore(ABC):
    """What a bus does whatever the broker under it: publishing with trace context and grouping, consumers that
    settle their handlers' outcomes, schedules written as JetStream's schedule headers. `Bus` runs it over NATS;
    the tests' MemoryBus (tests/helpers/memory_bus.py) over streams in memory with JetStream's semantics."""

    def __init__(self, retry_backoff: tuple[float, ...] = STAGE_RETRY_BACKOFF) -> None:
        self._retry_backoff = retry_backoff
        self._consumers: list[Consumer] = []
        self._precedence = Precedence()
        self._groups: dict[GroupKey, Group] = {}
        self._in_flight: set[GroupKey] = set()
        # When each subject's last group was sent (loop time): whether it is busy (`linger`).
        self._last_sent: dict[str, float] = {}
        self._sending: set[asyncio.Task[None]] = set()

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def _store(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Store the message and wait for the stream's PubAck, raising JetStream's errors."""

    @abstractmethod
    async def _pull(
        self,
        stream: str,
        durable: str,
        subject: str,
        *,
        ack_wait: float,
        max_deliver: int,
        max_ack_pending: int,
        sources: int,
    ) -> list[Source]:
        """`sources` sources pulling from the durable consumer `durable` of `subject` in `stream`, which is created
        on first use."""

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

    def publish_grouped(
        self, subject: str, *records: tuple[bytes, str], each_traced: bool = False, linger: float = 0.0
    ) -> asyncio.Future[None]:
        """Publish each (record, its id) as an element of a group (see the package's docstring): they join the group
        now, and are durable once the future returned is done - so a caller publishing many records at once awaits
        them together, without a task for each. `each_traced`: the records carry their own trace context, so they
        may share a group with other traces' records; the group's headers continue the trace of whichever
        publisher came first. `linger`: while the subject is busy (it was published within that long), a new group
        waits that long for more records before it goes - for publishers whose records come one per call (a Send),
        which would otherwise share a publish with few others: each publish costs the process a write, a PubAck
        to read and the wake-ups between, several times a record's own cost (intake's CPU per Send, docs/benchmarks.md).

        A group's Nats-Msg-Id is its record's id when it holds one, else a digest of its records' ids: the same
        group published again is dropped by JetStream, while a different grouping of some of the same records
        (after a redelivery) is not, so consumers de-duplicate records by their own ids.
        """
        key = (subject, None if each_traced else trace.get_current_span().get_span_context().trace_id)
        group = self._groups.get(key)
        if group is None:
            loop = asyncio.get_running_loop()
            now = loop.time()
            busy = linger > 0 and now - self._last_sent.get(subject, -linger) < linger
            group = Group([], loop.create_future(), contextvars.copy_context(), now + linger if busy else now)
            self._groups[key] = group
            if key not in self._in_flight:  # else the publish on its way sends it when it ends
                if busy:
                    loop.call_at(group.due, self._send_due, key, group)
                else:
                    loop.call_soon(self._send_group, key)
        group.records += records
        return asyncio.shield(group.done)

    def _send_due(self, key: GroupKey, group: Group) -> None:
        """Send `group` if it is still the one gathering under `key` and no publish of the key is on its way (that
        publish sends it when it ends)."""
        if self._groups.get(key) is group and key not in self._in_flight:
            self._send_group(key)

    def _send_group(self, key: GroupKey) -> None:
        """Send the group gathered under `key`. While it is on its way, later records of the key gather in the
        next group, sent once this one is acked (and its linger is over): one publish of the key in flight at a
        time, so records that arrive one per turn of the event loop (concurrent Sends) still share publishes under
        load, and a lone record on a quiet subject waits for nobody."""
        group = self._groups.pop(key)
        self._last_sent[key[0]] = asyncio.get_running_loop().time()
        self._in_flight.add(key)
        task = asyncio.create_task(self._publish_group(key, group), context=group.context)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish_group(self, key: GroupKey, group: Group) -> None:
        try:
            await self._publish_parts(key[0], group)
        finally:
            self._in_flight.discard(key)
            if (waiting := self._groups.get(key)) is not None:
                loop = asyncio.get_running_loop()
                if waiting.due <= loop.time():
                    self._send_group(key)
                else:
                    loop.call_at(waiting.due, self._send_due, key, waiting)

    async def _publish_parts(self, subject: str, group: Group) -> None:
        parts: list[list[tuple[bytes, str]]] = [[]]
        size = 0
        for record, record_id in group.records:
            if parts[-1] and (size + len(record) > MAX_GROUP_BYTES or len(parts[-1]) >= MAX_GROUP_RECORDS):
                parts.append([])
                size = 0
            parts[-1].append((record, record_id))
            size += len(record) + 8
        try:
            await asyncio.gather(
                *(self._publish(subject, grouped(r for r, _ in part), group_headers(part)) for part in parts)
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
        try:
            await self._publish(subject, payload, schedule_headers(at, target, replacing))
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
        with producing(subject):
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
        of_records: bool = False,
        in_hand: int = 1,
    ) -> None:
        """A durable pull consumer handing `handler` batches of up to `batch` messages. `linger`: after a batch
        smaller than that, wait this long before fetching again, so the next gathers more - for a handler whose
        cost is per batch (a transaction) more than per message, at that much more delay. `of_records`: `batch`
        counts the records of grouped messages instead (consuming.Consumer). `in_hand`: how many batches the
        handler may have at once, each fetched by a loop of its own on the same durable (as replicas share one):
        while one waits for its slowest call, its commit or its PubAcks, the next is already being handled."""
        sources = await self._pull(
            stream,
            durable,
            subject,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max(max_pending, batch * 4 * in_hand),
            sources=in_hand,
        )
        for source in sources:
            consumer = Consumer(
                self._store,
                durable,
                source,
                handler,
                batch,
                rank,
                self._precedence,
                self._retry_backoff,
                linger,
                of_records=of_records,
            )
            consumer.start()
            self._consumers.append(consumer)

    async def stop_consumers(self) -> None:
        await asyncio.gather(*(c.stop() for c in self._consumers))

    async def consumer_lag(self) -> dict[str, tuple[int, int]]:
        """Per durable consumer of this process: (messages not yet handed to it, messages it holds unacked)."""
        lags = await asyncio.gather(*(c.lag() for c in self._consumers), return_exceptions=True)
        return {c.name: lag for c, lag in zip(self._consumers, lags, strict=True) if not isinstance(lag, BaseException)}
