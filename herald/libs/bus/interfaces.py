"""What the services need of the bus, one small interface per job, so that a stage can depend on only what it uses
and run in a test over the in-memory bus (tests/helpers/memory_bus.py) as it runs over NATS (libs.bus.Bus)."""

import asyncio
from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from nats.js.kv import KeyValue

from herald.libs.bus.handlers import BatchHandler
from herald.libs.bus.schedules import Scheduled


class Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes, msg_id: str | None = None) -> None:
        """Durable once this returns; a repeat of `msg_id` within the duplicate window is dropped."""

    def publish_grouped(
        self, subject: str, *records: tuple[bytes, str], each_traced: bool = False, linger: float = 0.0
    ) -> Awaitable[None]:
        """Each (record, its id) in a group published together with other records of the subject: joined now,
        durable once the awaitable returned is done."""

    async def turn(self) -> None:
        """Return once no higher-ranked batch is in hand in this process."""


class Consumers(Protocol):
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
        """A durable consumer handing `handler` batches, settling each message with its outcome."""

    async def stop_consumers(self) -> None: ...

    async def consumer_lag(self) -> dict[str, tuple[int, int]]:
        """Per durable consumer of this process: (messages not yet handed to it, messages it holds unacked)."""


class Schedules(Protocol):
    async def schedule(
        self, subject: str, payload: bytes, at: datetime, target: str, *, replacing: int | None = None
    ) -> None:
        """Publish `payload` to `target` at `at`; `replacing`: compare-and-set, else ScheduleChanged."""

    async def scheduled(self, subject: str) -> Scheduled | None: ...

    async def scheduled_under(self, pattern: str) -> dict[str, Scheduled]: ...

    async def unschedule(self, pattern: str) -> None: ...


class Bucket(Protocol):
    """What herald uses of a JetStream KV bucket (nats-py's KeyValue), raising nats-py's errors."""

    async def get(self, key: str) -> KeyValue.Entry: ...

    async def put(self, key: str, value: bytes) -> int: ...

    async def create(self, key: str, value: bytes) -> int: ...

    async def create_all(self, entries: Sequence[tuple[str, bytes]]) -> list[int | Exception]:
        """`create` of each (key, value) at once: the revision each wrote, or its error - a key that exists gives
        KeyWrongLastSequenceError, as one deleted before may (`create` writes over that)."""

    async def update(self, key: str, value: bytes, last: int | None = None) -> int: ...

    async def delete(self, key: str) -> bool: ...

    async def keys(self) -> list[str]: ...


class KeyValues(Protocol):
    async def key_value(self, bucket: str, *, ttl: float | None = None, memory: bool = False) -> Bucket:
        """The bucket, created on first use."""


class Notices(Protocol):
    """Core NATS notices: not stored, heard only by who listens at the time."""

    async def announce(self, subject: str, payload: bytes = b"") -> None: ...

    async def announce_asking(self, subject: str, payload: bytes = b"") -> bool:
        """announce, and say whether anyone listened."""

    def notices(self, subject: str) -> AbstractAsyncContextManager[asyncio.Queue[bytes]]: ...


class Streams(Protocol):
    async def ensure_streams(self) -> None: ...

    async def subject_counts(self, stream: str) -> dict[str, int]: ...


class MessageBus(Publisher, Consumers, Schedules, KeyValues, Notices, Streams, Protocol):
    """All of the above: what a binary's runtime holds."""

    @property
    def connected(self) -> bool: ...

    async def close(self) -> None: ...
