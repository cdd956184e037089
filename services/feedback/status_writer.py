"""Feedback's consumers: record accepted messages, and fold delivery events into each delivery's state and into
the statistics (and the deliveries of messages a stage gave up on, as FAILED).

Each fetched batch is one transaction of a few bulk statements. Both consumers are idempotent: a message or event
id seen before changes nothing (INSERT ... ON CONFLICT DO NOTHING tells which are new). Events may arrive out of
order (several producers, redeliveries), so a delivery's state only moves forward by rank; among equal ranks the
later event wins. Each delivery counts once per state it reaches in the statistics (stats.py).
"""

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import structlog
from google.protobuf.message import DecodeError
from herald.v1 import common_pb2, events_pb2
from prometheus_client import Counter, Histogram
from sqlalchemy import select, update
from sqlalchemy.exc import DataError, IntegrityError

from libs import subjects
from libs.bus import ACK, Incoming, Outcome
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.feedback import stats, tables, unprocessed
from services.feedback.erasure import Erasures

log = structlog.get_logger()
# What recording a batch asks of the consumer: ACK, or to be redelivered after a delay (a conflict).
Delay = float | None
# A record a bus message carries: an accepted message, or a status event.
R = TypeVar("R", events_pb2.AcceptedMessage, events_pb2.DeliveryEvent)

# The durable consumer of what the stages gave up on (on_unprocessed).
UNPROCESSED_CONSUMER = "feedback-unprocessed"
# Two replicas created the same new delivery at once: the loser folds its batch in again shortly.
CONFLICT_RETRY = 0.05

S = common_pb2
RANK: dict[int, int] = {
    S.DELIVERY_STATE_PENDING: 0,
    S.DELIVERY_STATE_SCHEDULED: 1,
    S.DELIVERY_STATE_SENT: 2,
    S.DELIVERY_STATE_FAILED: 2,
    S.DELIVERY_STATE_SUPPRESSED: 2,
    S.DELIVERY_STATE_CANCELLED: 2,
    S.DELIVERY_STATE_EXPIRED: 2,
    S.DELIVERY_STATE_DIGESTED: 2,
    S.DELIVERY_STATE_DELIVERED: 3,
    S.DELIVERY_STATE_READ: 4,
    S.DELIVERY_STATE_OPENED: 4,
    S.DELIVERY_STATE_CLICKED: 5,
}
# How long after a state change its status can be read: feedback's lag, as users notice it.
STATUS_DELAY = Histogram(
    "herald_feedback_status_delay_seconds",
    "From a delivery event's occur_time to the commit that makes it visible in StatusService.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
REJECTED_EVENTS = Counter(
    "herald_feedback_rejected_events_total", "Status events dropped because they cannot be recorded (malformed)."
)
REJECTED_MESSAGES = Counter(
    "herald_feedback_rejected_messages_total",
    "Accepted messages dropped because they cannot be recorded (malformed).",
)
# What no row can hold, however often it is redelivered: undecodable, an impossible time, too long for a column.
UNRECORDABLE = (DecodeError, ValueError, DataError)
D = tables.Delivery
MESSAGES, EVENTS, DELIVERIES = (
    tables.Base.metadata.tables[name] for name in ("feedback_messages", "feedback_events", "feedback_deliveries")
)
# What folding reads of a known delivery; all but the first two may change.
FOLDED = (
    D.delivery_id,
    D.app_id,
    D.channel,
    D.template_id,
    D.content,
    D.state,
    D.attempts,
    D.reason,
    D.provider,
    D.update_time,
    D.counted,
    D.queued_time,
)


class Timeline:
    def __init__(self, db: Database, erasures: Erasures) -> None:
        self._db = db
        self._erasures = erasures

    async def on_messages(self, batch: list[Incoming]) -> list[Outcome]:
        messages = _decoded(batch, _accepted_messages, REJECTED_MESSAGES, "an accepted message")
        outcome = await _dropping_unrecordable(self._record_messages, messages, REJECTED_MESSAGES, "accepted message")
        return [outcome] * len(batch)

    async def on_events(self, batch: list[Incoming]) -> list[Outcome]:
        events = _decoded(batch, _delivery_events, REJECTED_EVENTS, "a status event")
        outcome = await _dropping_unrecordable(self._record_events, events, REJECTED_EVENTS, "status event")
        return [outcome] * len(batch)

    async def on_unprocessed(self, batch: list[Incoming]) -> list[Outcome]:
        """Messages a stage gave up on: their deliveries become FAILED (unprocessed.py). Feedback's own give-ups
        on this consumer are left alone, or one would feed the next."""
        own = subjects.unprocessed(UNPROCESSED_CONSUMER)
        events = [e for i in batch if i.subject != own for e in unprocessed.failed_events(i)]
        outcome = await _dropping_unrecordable(self._record_events, events, REJECTED_EVENTS, "status event")
        return [outcome] * len(batch)

    async def _record_messages(self, accepted: list[events_pb2.AcceptedMessage]) -> Delay:
        messages = {m.message_id: m for m in accepted}
        rows = [_message_row(messages[key]) for key in sorted(messages)]
        async with self._db.session.begin() as session:
            await self._db.insert_rows(session, MESSAGES, rows, key=["message_id"])
        return ACK

    async def _record_events(self, received: list[events_pb2.DeliveryEvent]) -> Delay:
        try:
            events = {e.event_id: self._erasures.scrub(e) for e in received}
            when = {key: from_timestamp(e.occur_time) or now() for key, e in events.items()}
            rows = [_event_row(events[key], when[key]) for key in sorted(events)]
            tally = stats.Tally()
            async with self._db.session.begin() as session:
                fresh = set(await self._db.insert_rows(session, EVENTS, rows, key=["event_id"], returning="event_id"))
                if fresh:
                    ordered = sorted(((events[k], when[k]) for k in fresh), key=lambda e: e[1])
                    await self._fold(session, ordered, tally)
        except IntegrityError:
            return CONFLICT_RETRY
        tally.observe()
        recorded = now()
        for key in fresh:
            STATUS_DELAY.observe(max((recorded - when[key]).total_seconds(), 0.0))
        return ACK

    async def _fold(
        self, session: Any, fresh: list[tuple[events_pb2.DeliveryEvent, datetime]], tally: stats.Tally
    ) -> None:
        """Fold the new events, oldest first, each with the time it occurred, counting them in `tally`."""
        found = await session.execute(
            select(*FOLDED)
            .where(D.delivery_id.in_({e.delivery_id for e, _ in fresh}))
            .order_by(D.delivery_id)
            .with_for_update()
        )
        known = {row.delivery_id: row._asdict() for row in found}
        folded = {key: dict(row) for key, row in known.items()}
        created: dict[str, dict[str, Any]] = {}
        for event, occurred in fresh:
            delivery = folded.get(event.delivery_id) or created.get(event.delivery_id)
            if delivery is None:
                delivery = created[event.delivery_id] = _delivery_row(event, occurred)
            _apply(delivery, event, occurred, tally)
        await self._db.insert_rows(session, DELIVERIES, list(created.values()))
        changes = [_changes(known[key], row) for key, row in sorted(folded.items())]
        if changes := [c for c in changes if len(c) > 1]:
            await session.execute(update(D), changes)
        await tally.save(session, self._db)


def _decoded(batch: list[Incoming], parse: Callable[[bytes], Iterable[R]], rejected: Counter, what: str) -> list[R]:
    """The records in each fetched message; a message that cannot be parsed is dropped loudly."""
    records: list[R] = []
    for incoming in batch:
        try:
            records += parse(incoming.data)
        except DecodeError as e:
            log.error(f"dropped {what} that cannot be decoded", subject=incoming.subject, error=str(e))
            rejected.inc()
    return records


async def _dropping_unrecordable(
    record: Callable[[list[R]], Awaitable[Delay]], records: list[R], rejected: Counter, what: str
) -> Delay:
    """Record `records` together. One that no row can hold would fail them all on every redelivery, holding up
    everything fetched with it: then each half is recorded on its own, down to the culprit, which is dropped
    loudly (an error log with its id, `rejected` counted). The outcome is the latest any part asked for."""
    if not records:
        return ACK
    try:
        return await record(records)
    except UNRECORDABLE as e:
        if len(records) == 1:
            log.error(f"dropped a {what} that cannot be recorded", record=_record_id(records[0]), error=str(e))
            rejected.inc()
            return ACK
        half = len(records) // 2
        delays = [
            await _dropping_unrecordable(record, part, rejected, what) for part in (records[:half], records[half:])
        ]
        return max((d for d in delays if d is not None), default=ACK)


def _accepted_messages(data: bytes) -> Iterable[events_pb2.AcceptedMessage]:
    return events_pb2.AcceptedBatch.FromString(data).messages


def _delivery_events(data: bytes) -> Iterable[events_pb2.DeliveryEvent]:
    return events_pb2.DeliveryEvents.FromString(data).events


def _record_id(record: events_pb2.AcceptedMessage | events_pb2.DeliveryEvent) -> str:
    return (record.event_id if isinstance(record, events_pb2.DeliveryEvent) else record.message_id)[:80]


def _apply(delivery: dict[str, Any], event: events_pb2.DeliveryEvent, occurred: datetime, tally: stats.Tally) -> None:
    delivery["attempts"] = max(delivery["attempts"], event.attempt)
    delivery["content"] = delivery["content"] or event.content
    delivery["template_id"] = delivery["template_id"] or event.template_id
    queued = delivery["queued_time"]
    if event.state == S.DELIVERY_STATE_PENDING and (queued is None or occurred < queued):
        delivery["queued_time"] = occurred
    new, current = RANK.get(event.state, 0), RANK.get(delivery["state"], 0)
    if new > current or (new == current and occurred >= delivery["update_time"]):
        delivery["state"] = event.state
        delivery["reason"] = event.reason
        delivery["provider"] = event.provider or delivery["provider"]
        delivery["update_time"] = occurred
    tally.count(delivery, event, occurred)


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The primary key and what changed: a bulk UPDATE sets only those (content seldom, so search indexes rest)."""
    return {"delivery_id": after["delivery_id"]} | {k: v for k, v in after.items() if v != before[k]}


def _message_row(message: events_pb2.AcceptedMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "app_id": message.app_id,
        "template_id": message.template.template_id,
        "template_version": message.template.version,
        "category": message.template.category,
        "create_time": from_timestamp(message.create_time) or now(),
    }


def _event_row(event: events_pb2.DeliveryEvent, occurred: datetime) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "delivery_id": event.delivery_id,
        "state": event.state,
        "attempt": event.attempt,
        "reason": event.reason,
        "provider": event.provider,
        "occur_time": occurred,
    }


def _delivery_row(event: events_pb2.DeliveryEvent, occurred: datetime) -> dict[str, Any]:
    """A delivery first heard of: the event's own fields are folded in after."""
    return {
        "delivery_id": event.delivery_id,
        "message_id": event.message_id,
        "app_id": event.app_id,
        "template_id": event.template_id,
        "content": event.content,
        "user_id": event.user_id,
        "channel": event.channel,
        "state": event.state,
        "attempts": 0,
        "reason": "",
        "provider": "",
        "create_time": occurred,
        "update_time": occurred,
        "counted": 0,
        "queued_time": None,
    }
