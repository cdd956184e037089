"""The bus in memory, for testing one stage's decisions in one process without a broker.

It keeps herald's streams (libs.bus.STREAMS) in memory and answers the headers the NATS bus sends as JetStream
does: Nats-Msg-Id dropped within the duplicate window, Nats-Expected-Last-Subject-Sequence refused with
JetStream's error, Nats-Schedule @at fired onto Nats-Schedule-Target at its time and then removed; durable
consumers see every message from the stream's start, a nak redelivers after its delay, max_deliver bounds the
deliveries. Everything above the broker - grouping, trace context, consumers settling outcomes, retries and
dead-lettering - is the NATS bus's own code (libs.bus.BusCore), so tests run what production runs.
tests/libs/test_bus_contract.py checks both buses against one set of tests.

Not modelled: ack_wait (a handler here always settles), max_ack_pending, streams' max_age, replicas, outages,
and JetStream's API beyond libs.bus.interfaces (there is no `js`: code that calls it runs against NATS).
"""

import asyncio
import heapq
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from types import TracebackType

from nats.js.api import Header
from nats.js.errors import (
    APIError,
    InvalidKeyError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NoStreamResponseError,
)
from nats.js.kv import KeyValue, _is_key_valid

from herald.libs import subjects
from herald.libs.bus.consuming import Delivered, Source
from herald.libs.bus.core import BusCore
from herald.libs.bus.schedules import WRONG_LAST_SEQUENCE, Scheduled
from herald.libs.bus.streams import DUPLICATE_WINDOW, STREAMS
from herald.libs.config import STAGE_RETRY_BACKOFF

SCHEDULE = "Nats-Schedule"
SCHEDULE_TARGET = "Nats-Schedule-Target"


def matches(pattern: str, subject: str) -> bool:
    """Whether NATS delivers `subject` to a subscription on `pattern` ("*" one token, ">" the rest)."""
    wanted, parts = pattern.split("."), subject.split(".")
    for n, part in enumerate(wanted):
        if part == ">":
            return len(parts) > n
        if n >= len(parts) or part not in ("*", parts[n]):
            return False
    return len(wanted) == len(parts)


@dataclass(frozen=True)
class _Stored:
    sequence: int
    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass
class _Stream:
    subjects: list[str]
    schedules: bool
    messages: dict[int, _Stored] = field(default_factory=dict)
    last: int = 0
    # The sequence of the last message on each subject the stream holds.
    last_on: dict[str, int] = field(default_factory=dict)
    # Nats-Msg-Id -> when it was stored (loop time).
    ids: dict[str, float] = field(default_factory=dict)
    durables: list["_Durable"] = field(default_factory=list)

    def remove(self, sequence: int) -> None:
        stored = self.messages.pop(sequence)
        if self.last_on.get(stored.subject) == sequence:
            earlier = [s for s, m in self.messages.items() if m.subject == stored.subject]
            if earlier:
                self.last_on[stored.subject] = max(earlier)
            else:
                del self.last_on[stored.subject]


class _Durable:
    """A durable pull consumer: every consume() of the same name shares it, as replicas share one in JetStream."""

    def __init__(self, stream: _Stream, subject: str, max_deliver: int) -> None:
        self._stream = stream
        self._subject = subject
        self._max_deliver = max_deliver
        self._cursor = 0
        # (due, sequence) of naked messages.
        self._redeliveries: list[tuple[float, int]] = []
        # Delivered and not yet acked: sequence -> deliveries so far.
        self._unacked: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._timers: list[asyncio.TimerHandle] = []
        self._stopped = False

    def wake(self) -> None:
        self._wake.set()

    async def fetch(self, batch: int) -> list[Delivered]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while not (delivered := self._take(batch)):
            if self._stopped:
                await asyncio.sleep(0)  # the bus is closing: let its consumers see they are stopping
                return []
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                return []
        return delivered

    def _take(self, batch: int) -> list[Delivered]:
        now = asyncio.get_running_loop().time()
        taken: list[Delivered] = []
        while self._redeliveries and self._redeliveries[0][0] <= now and len(taken) < batch:
            _, sequence = heapq.heappop(self._redeliveries)
            if sequence in self._stream.messages:
                taken.append(self._deliver(self._stream.messages[sequence]))
            else:
                self._unacked.pop(sequence, None)
        while len(taken) < batch and self._cursor < self._stream.last:
            self._cursor += 1
            stored = self._stream.messages.get(self._cursor)
            if stored is not None and matches(self._subject, stored.subject):
                taken.append(self._deliver(stored))
        return taken

    def _deliver(self, stored: _Stored) -> Delivered:
        count = self._unacked[stored.sequence] = self._unacked.get(stored.sequence, 0) + 1
        return Delivered(
            stored.subject,
            stored.data,
            dict(stored.headers),
            count,
            stored.sequence,
            partial(self._settle, stored.sequence),
        )

    async def _settle(self, sequence: int, delay: float | None) -> None:
        if delay is None or 0 < self._max_deliver <= self._unacked[sequence]:
            del self._unacked[sequence]
            return
        loop = asyncio.get_running_loop()
        heapq.heappush(self._redeliveries, (loop.time() + delay, sequence))
        self._timers.append(loop.call_later(delay, self._wake.set))

    async def lag(self) -> tuple[int, int]:
        waiting = sum(
            1 for s, m in self._stream.messages.items() if s > self._cursor and matches(self._subject, m.subject)
        )
        return waiting, len(self._unacked)

    async def close(self) -> None:
        """A pull subscription ends; the durable, like JetStream's, stays."""

    def stop(self) -> None:
        """Hand out nothing more, at once (a fetch waits no longer), so that the bus closes without delay."""
        self._stopped = True
        self._wake.set()
        for timer in self._timers:
            timer.cancel()


@dataclass
class _Entry:
    # None: a delete marker.
    value: bytes | None
    revision: int
    written: float


class MemoryKeyValue:
    """A KV bucket with what herald uses of nats-py's KeyValue, raising the same errors. Revisions count writes
    in the bucket, a delete leaves a marker, and `ttl` expires entries (markers too) as the bucket's max_age does."""

    def __init__(self, bucket: str, ttl: float | None) -> None:
        self._bucket = bucket
        self._ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._revisions = itertools.count(1)

    def _current(self, key: str) -> _Entry | None:
        if not _is_key_valid(key):
            raise InvalidKeyError(key)
        entry = self._entries.get(key)
        if entry is not None and self._ttl and asyncio.get_running_loop().time() - entry.written >= self._ttl:
            del self._entries[key]
            return None
        return entry

    def _write(self, key: str, value: bytes | None) -> int:
        revision = next(self._revisions)
        self._entries[key] = _Entry(value, revision, asyncio.get_running_loop().time())
        return revision

    async def get(self, key: str) -> KeyValue.Entry:
        entry = self._current(key)
        if entry is None or entry.value is None:
            raise KeyNotFoundError
        return KeyValue.Entry(self._bucket, key, entry.value, entry.revision, None, None, None)

    async def put(self, key: str, value: bytes) -> int:
        self._current(key)
        return self._write(key, value)

    async def create(self, key: str, value: bytes) -> int:
        entry = self._current(key)
        if entry is not None and entry.value is not None:
            raise KeyWrongLastSequenceError(description="wrong last sequence")
        return self._write(key, value)

    async def create_all(self, entries: Sequence[tuple[str, bytes]]) -> list[int | Exception]:
        written: list[int | Exception] = []
        for key, value in entries:
            try:
                written.append(await self.create(key, value))
            except KeyWrongLastSequenceError as e:
                written.append(e)
        return written

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        entry = self._current(key)
        if (last or 0) != (entry.revision if entry else 0):
            raise KeyWrongLastSequenceError(description="wrong last sequence")
        return self._write(key, value)

    async def delete(self, key: str) -> bool:
        self._current(key)
        self._write(key, None)
        return True

    async def keys(self) -> list[str]:
        found = [key for key in list(self._entries) if (entry := self._current(key)) and entry.value is not None]
        if not found:
            raise NoKeysError
        return found


class MemoryBus(BusCore):
    """herald's bus over streams in this process (see the module's docstring)."""

    def __init__(
        self, retry_backoff: tuple[float, ...] = STAGE_RETRY_BACKOFF, duplicate_window: float = DUPLICATE_WINDOW
    ) -> None:
        super().__init__(retry_backoff)
        self._duplicate_window = duplicate_window
        self._streams = {name: _Stream(list(s.subjects), s.schedules) for name, s in STREAMS.items()}
        self._durables: dict[str, _Durable] = {}
        self._buckets: dict[str, MemoryKeyValue] = {}
        self._listeners: list[tuple[str, asyncio.Queue[bytes]]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._firing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def __aenter__(self) -> "MemoryBus":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return not self._closed

    async def ensure_streams(self) -> None:
        """The streams exist from the start."""

    def _stream_of(self, subject: str) -> _Stream:
        for stream in self._streams.values():
            if any(matches(pattern, subject) for pattern in stream.subjects):
                return stream
        raise NoStreamResponseError

    async def _store(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        stream = self._stream_of(subject)
        now = asyncio.get_running_loop().time()
        msg_id = headers.get(Header.MSG_ID)
        if msg_id is not None and now - stream.ids.get(msg_id, -self._duplicate_window) < self._duplicate_window:
            return
        expected = headers.get(Header.EXPECTED_LAST_SUBJECT_SEQUENCE)
        if expected is not None and int(expected) != stream.last_on.get(subject, 0):
            raise APIError(code=400, err_code=WRONG_LAST_SEQUENCE, description="wrong last sequence")
        if msg_id is not None:
            stream.ids[msg_id] = now
        schedule = headers.get(SCHEDULE) if stream.schedules else None
        if schedule is not None and subject in stream.last_on:
            stream.remove(stream.last_on[subject])  # a schedule's subject names it: the new one replaces it
        stream.last += 1
        stored = stream.messages[stream.last] = _Stored(stream.last, subject, payload, dict(headers))
        stream.last_on[subject] = stored.sequence
        if schedule is not None:
            self._plan(stream, stored, schedule)
        for durable in stream.durables:
            durable.wake()

    def _plan(self, stream: _Stream, stored: _Stored, schedule: str) -> None:
        at = datetime.strptime(schedule.removeprefix("@at "), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        delay = max((at - datetime.now(UTC)).total_seconds(), 0.0)
        self._timers.append(asyncio.get_running_loop().call_later(delay, self._fire, stream, stored))

    def _fire(self, stream: _Stream, stored: _Stored) -> None:
        """Publish a schedule that is still the one planned to its target, and remove it, as the server does."""
        if stream.messages.get(stored.sequence) is not stored:
            return
        stream.remove(stored.sequence)
        headers = {
            k: v
            for k, v in stored.headers.items()
            if not k.startswith(("Nats-Schedule", "Nats-Expected")) and k != Header.MSG_ID
        }
        headers |= {"Nats-Scheduler": stored.subject, "Nats-Schedule-Next": "purge"}
        if ttl := stored.headers.get("Nats-Schedule-TTL"):
            headers["Nats-TTL"] = ttl
        task = asyncio.create_task(self._store(stored.headers[SCHEDULE_TARGET], stored.data, headers))
        self._firing.add(task)
        task.add_done_callback(self._firing.discard)

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
        found = self._durables.get(durable)
        if found is None:
            found = self._durables[durable] = _Durable(self._streams[stream], subject, max_deliver)
            self._streams[stream].durables.append(found)
        return [found] * sources

    async def scheduled(self, subject: str) -> Scheduled | None:
        stream = self._streams[subjects.SCHEDULES_STREAM]
        sequence = stream.last_on.get(subject)
        return None if sequence is None else Scheduled(stream.messages[sequence].data, sequence)

    async def scheduled_under(self, pattern: str) -> dict[str, Scheduled]:
        stream = self._streams[subjects.SCHEDULES_STREAM]
        return {
            subject: Scheduled(stream.messages[sequence].data, sequence)
            for subject, sequence in stream.last_on.items()
            if matches(pattern, subject)
        }

    async def unschedule(self, pattern: str) -> None:
        stream = self._streams[subjects.SCHEDULES_STREAM]
        for sequence in [s for s, m in stream.messages.items() if matches(pattern, m.subject)]:
            stream.remove(sequence)

    async def key_value(self, bucket: str, *, ttl: float | None = None, memory: bool = False) -> MemoryKeyValue:
        return self._buckets.setdefault(bucket, MemoryKeyValue(bucket, ttl))

    async def announce(self, subject: str, payload: bytes = b"") -> None:
        await self.announce_asking(subject, payload)

    async def announce_asking(self, subject: str, payload: bytes = b"") -> bool:
        heard = [queue for pattern, queue in self._listeners if matches(pattern, subject)]
        for queue in heard:
            queue.put_nowait(payload)
        return bool(heard)

    @asynccontextmanager
    async def notices(self, subject: str) -> AsyncIterator[asyncio.Queue[bytes]]:
        listener = (subject, asyncio.Queue[bytes]())
        self._listeners.append(listener)
        try:
            yield listener[1]
        finally:
            self._listeners.remove(listener)

    async def subject_counts(self, stream: str) -> dict[str, int]:
        return dict(Counter(m.subject for m in self._streams[stream].messages.values()))

    async def close(self) -> None:
        stopping = asyncio.ensure_future(self.stop_consumers())
        await asyncio.sleep(0)  # each consumer told to stop before its fetch returns
        for durable in self._durables.values():
            durable.stop()
        await stopping
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        for task in list(self._firing):
            task.cancel()
