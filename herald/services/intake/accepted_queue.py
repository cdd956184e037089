"""Accepted messages on their way to the router: published as AcceptedBatches, and a message with an idempotency
key (or an audience) stored first, to claim its key in a row of its own, so a retried Send is answered with the
message it already made."""

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from herald.v1 import message_service_pb2 as pb
from prometheus_client import Counter as PromCounter
from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.exc import IntegrityError

from herald.internal.v1 import work_pb2
from herald.libs import categories, metrics, subjects
from herald.libs.bus import Publisher
from herald.libs.bus.grouping import join_groups
from herald.libs.errors import TRANSIENT, Unavailable
from herald.libs.store import Database
from herald.libs.timeutil import from_timestamp, now
from herald.libs.together import together
from herald.services.intake import tables

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# How long a Send's message waits for concurrent Sends' to share its publish, while Sends keep coming
# (Bus.publish_grouped): at 2,000 Sends a second, groups of about eighteen instead of two, for a quarter less of
# intake's CPU per Send; 4 ms saved a fifth, 16 no more than 8 (docs/benchmarks.md). A Send on a quiet subject goes
# at once.
LONE_SEND_LINGER = 0.008
ACCEPTED = PromCounter(
    "herald_intake_messages_accepted_total", "Messages accepted (queued), by app and category.", ("app", "category")
)

# An intake_messages row, as Core inserts and returns it.
Row = dict[str, Any]


class AcceptedQueue:
    def __init__(self, db: Database, bus: Publisher) -> None:
        self._db = db
        self._bus = bus

    async def accept(self, items: list[tuple[work_pb2.AcceptedMessage, str]]) -> list[pb.SendResponse]:
        """Queue the messages. Only one with an idempotency key is stored first, to claim the key in a row of its
        own; the others' durable record is JetStream. One whose key was used already is answered with that
        message, queued again."""
        responses: list[pb.SendResponse] = []
        fresh: list[tuple[int, bytes, str]] = []
        again: list[Row] = []
        taken: list[tuple[str, int]] = []  # (app, category) of each message, counted at the end
        for accepted, key in items:
            payload = accepted.SerializeToString()
            category = accepted.template.category
            taken.append((accepted.app_id, category))
            if key and (existing := await self.claim(row(accepted, payload, key))) is not None:
                again.append(existing)
                responses.append(pb.SendResponse(message_id=existing["message_id"], duplicate=True))
            else:
                fresh.append((category, payload, accepted.message_id))
                responses.append(pb.SendResponse(message_id=accepted.message_id))
        await together([self._queue(fresh), *(self.publish(stored) for stored in again)])
        for (app_id, kind), count in Counter(taken).items():
            metrics.child(ACCEPTED, app_id, categories.name(kind)).inc(count)
        return responses

    async def store(self, row: Row) -> None:
        try:
            async with self._db.session.begin() as session:
                await session.execute(insert(tables.Message), [row])
        except TRANSIENT as e:
            raise Unavailable("could not store the message; it was not accepted, retry") from e

    async def _queue(self, messages: Sequence[tuple[int, bytes, str]]) -> None:
        """Publish one call's new messages (category, payload, message id): together, they travel as a few
        AcceptedBatches (Bus.publish_grouped), a SendBatch of 100 as one.

        A lone message (a Send's) carries its call's trace (CommonPart), so it shares a publish with concurrent
        Sends', waiting up to LONE_SEND_LINGER for them while Sends keep coming. A SendBatch's messages keep a
        publish of their own: the router admits a fetched batch whole, and batches merged across calls would let a
        marketing flood hold more of a shared router at once, in front of a critical message (p99 behind a flood
        60 -> 240 ms when tried)."""
        alone = len(messages) == 1
        records = ((subjects.message_accepted(c), payload, message_id) for c, payload, message_id in messages)
        try:
            await join_groups(self._bus, records, each_traced=alone, linger=LONE_SEND_LINGER if alone else 0.0)
        except TRANSIENT as e:
            raise Unavailable(
                "could not queue the message; retry (with the same idempotency key, if it had one)"
            ) from e

    async def claim(self, row: Row) -> Row | None:
        """Insert a keyed row; if the key was used within IDEMPOTENCY_WINDOW (here or on another replica),
        return that first row instead. An older use of the key is released, so the key works again."""
        for _ in range(3):
            try:
                async with self._db.session.begin() as session:
                    await session.execute(insert(tables.Message), [row])
                return None
            except IntegrityError:
                pass
            key = _with_key(row["app_id"], row["idempotency_key"])
            async with self._db.session.begin() as session:
                existing = await session.scalar(select(tables.Message).where(key))
                if existing is not None and existing.create_time > now() - IDEMPOTENCY_WINDOW:
                    return as_row(existing)
                if existing is not None:  # a statement, not the ORM's flush: the purge may delete the row meanwhile
                    await session.execute(
                        update(tables.Message).where(key).values(idempotency_key=None),
                        execution_options={"synchronize_session": False},
                    )
        raise Unavailable("the idempotency key is being claimed concurrently; retry")

    async def publish(self, row: Row) -> None:
        """Queue a stored message again (found by its idempotency key), or a large audience's parts one by one.

        UNAVAILABLE means "not queued": the bus refuses to publish while it is reconnecting
        (herald/libs/bus/core.py)."""
        try:
            async for part, payload in self.payloads(row):
                msg_id = row["message_id"] if not row["parts"] else f"{row['message_id']}.{part}"
                category = work_pb2.AcceptedMessage.FromString(payload).template.category
                lane = subjects.message_parts if row["parts"] else subjects.message_accepted
                await self._bus.publish_grouped(lane(category), (payload, msg_id), each_traced=True)
        except TRANSIENT as e:
            raise Unavailable("could not queue the message; retry with the same idempotency key") from e

    async def payloads(self, row: Row) -> AsyncIterator[tuple[int, bytes]]:
        """The message as it travels: one payload, or a large audience's parts read back a few at a time."""
        if not row["parts"]:
            yield 0, row["payload"]
            return
        async with self._db.session() as session:
            parts = await session.stream_scalars(
                select(tables.MessagePart)
                .where(tables.MessagePart.message_id == row["message_id"])
                .order_by(tables.MessagePart.part)
                .execution_options(yield_per=20)
            )
            async for part in parts:
                yield part.part, part.payload

    async def keyed(self, app_id: str, key: str) -> Row | None:
        """The app's message with this idempotency key, while the key's window lasts."""
        async with self._db.session() as session:
            found = await session.scalar(select(tables.Message).where(_with_key(app_id, key)))
        return as_row(found) if found is not None and found.create_time > now() - IDEMPOTENCY_WINDOW else None


def _with_key(app_id: str, key: str) -> ColumnElement[bool]:
    """The app's message with this idempotency key (one at most: the key is unique per app)."""
    return (tables.Message.app_id == app_id) & (tables.Message.idempotency_key == key)


def row(accepted: work_pb2.AcceptedMessage, payload: bytes, key: str) -> Row:
    """The message's intake_messages row (a keyed message's, or an audience's with an empty payload)."""
    return {
        "message_id": accepted.message_id,
        "app_id": accepted.app_id,
        "idempotency_key": key or None,
        "template_id": accepted.template.template_id,
        "template_version": accepted.template.version,
        "payload": payload,
        "create_time": now(),
        "send_at": from_timestamp(accepted.send_at),
        "cancel_time": None,
        "parts": 0,
    }


def as_row(message: tables.Message) -> Row:
    return {column.key: getattr(message, column.key) for column in tables.Message.__table__.columns}
