"""Feedback's consumers, the writer of the status records StatusService reads: record accepted messages, and
fold delivery events into each delivery's record and into the statistics (and the deliveries of messages a stage
gave up on, as FAILED).

Each fetched batch is one transaction of a few bulk statements. Both consumers are idempotent: a message or event
id seen before changes nothing (INSERT ... ON CONFLICT DO NOTHING tells which are new). What the new events make
of the records is status_fold.py's pure fold; this module reads the records, stores the result and counts.
"""

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import structlog
from google.protobuf.message import DecodeError
from herald.v1 import events_pb2
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError

from herald.internal.v1 import work_pb2
from herald.libs import metrics, subjects
from herald.libs.bus import ACK, Incoming, Outcome
from herald.libs.store import Database
from herald.libs.telemetry import trace_id
from herald.libs.timeutil import from_timestamp, now
from herald.services.feedback import stats, status_fold, tables, unprocessed
from herald.services.feedback.erasure import Erasures

log = structlog.get_logger()
# What recording a batch asks of the consumer: ACK, or to be redelivered after a delay (a conflict).
Delay = float | None
# A record a bus message carries: an accepted message, or a status event.
R = TypeVar("R", work_pb2.AcceptedMessage, events_pb2.DeliveryEvent)

# The durable consumer of what the stages gave up on (on_unprocessed).
UNPROCESSED_CONSUMER = "feedback-unprocessed"
# Two replicas created the same new delivery at once: the loser folds its batch in again shortly.
CONFLICT_RETRY = 0.05

# How long after a state change its status can be read: feedback's lag, as users notice it.
STATUS_DELAY = metrics.BatchHistogram(
    "herald_feedback_status_delay_seconds",
    "From a delivery event's occur_time to the commit that makes it visible in StatusService.",
    (),
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
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
MESSAGES, EVENTS, DELIVERIES, MESSAGE_STATES = (
    tables.Base.metadata.tables[name]
    for name in ("feedback_messages", "feedback_events", "feedback_deliveries", "feedback_message_states")
)
# What folding reads of a known delivery; all but the first three may change.
FOLDED = (
    D.delivery_id,
    D.message_id,
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


class StatusWriter:
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

    async def _record_messages(self, accepted: list[work_pb2.AcceptedMessage]) -> Delay:
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
                    await self._fold(session, [(events[k], when[k]) for k in fresh], tally)
        except IntegrityError:
            return CONFLICT_RETRY
        tally.observe()
        recorded = now()
        STATUS_DELAY.observe((), (max((recorded - when[key]).total_seconds(), 0.0) for key in fresh))
        return ACK

    async def _fold(
        self, session: Any, fresh: list[tuple[events_pb2.DeliveryEvent, datetime]], tally: stats.Tally
    ) -> None:
        """Fold the new events, each with the time it occurred, into their records, counting them in `tally`."""
        found = await session.execute(
            select(*FOLDED)
            .where(D.delivery_id.in_({e.delivery_id for e, _ in fresh}))
            .order_by(D.delivery_id)
            .with_for_update()
        )
        folded = status_fold.fold({row.delivery_id: row._asdict() for row in found}, fresh, tally)
        await self._db.insert_rows(session, DELIVERIES, folded.created)
        await self._db.update_rows(session, DELIVERIES, folded.changes, key="delivery_id")
        # In key order, as the statistics, so two replicas' batches cannot deadlock on a campaign's rows.
        moves = [{"message_id": m, "state": s, "deliveries": n} for (m, s), n in sorted(folded.moves.items())]
        await self._db.insert_rows(session, MESSAGE_STATES, moves, key=["message_id", "state"], add=["deliveries"])
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


def _accepted_messages(data: bytes) -> Iterable[work_pb2.AcceptedMessage]:
    return work_pb2.AcceptedBatch.FromString(data).messages


def _delivery_events(data: bytes) -> Iterable[events_pb2.DeliveryEvent]:
    return events_pb2.DeliveryEvents.FromString(data).events


def _record_id(record: work_pb2.AcceptedMessage | events_pb2.DeliveryEvent) -> str:
    return (record.event_id if isinstance(record, events_pb2.DeliveryEvent) else record.message_id)[:80]


def _message_row(message: work_pb2.AcceptedMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "app_id": message.app_id,
        "template_id": message.template.template_id,
        "template_version": message.template.version,
        "category": message.template.category,
        "create_time": from_timestamp(message.create_time) or now(),
        "trace_id": trace_id(message.traceparent),
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
