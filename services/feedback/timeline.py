"""Feedback's consumers: record accepted messages and fold delivery events into each delivery's state.

Each fetched batch is one transaction. Both consumers are idempotent: a message
or event id seen before changes nothing. Events may arrive out of order (two
producers, redeliveries), so a delivery's state only moves forward by rank;
among equal ranks the later event wins.
"""

from datetime import datetime

from herald.v1 import common_pb2, events_pb2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from libs.bus import ACK, Incoming, Outcome
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.feedback import tables

# Two replicas created the same new row at once: the loser folds its batch in again shortly.
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
    S.DELIVERY_STATE_DELIVERED: 3,
    S.DELIVERY_STATE_READ: 4,
}


class Timeline:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def on_messages(self, batch: list[Incoming]) -> list[Outcome]:
        messages = {m.message_id: m for m in (events_pb2.AcceptedMessage.FromString(i.data) for i in batch)}
        try:
            async with self._db.session.begin() as session:
                known = set(
                    await session.scalars(
                        select(tables.Message.message_id).where(tables.Message.message_id.in_(messages))
                    )
                )
                session.add_all(_message_row(m) for m in messages.values() if m.message_id not in known)
        except IntegrityError:
            return [CONFLICT_RETRY] * len(batch)
        return [ACK] * len(batch)

    async def on_events(self, batch: list[Incoming]) -> list[Outcome]:
        events = {e.event_id: e for e in (events_pb2.DeliveryEvent.FromString(i.data) for i in batch)}
        try:
            async with self._db.session.begin() as session:
                known = set(
                    await session.scalars(select(tables.Event.event_id).where(tables.Event.event_id.in_(events)))
                )
                fresh = sorted((e for e in events.values() if e.event_id not in known), key=_occurred)
                if fresh:
                    rows = await session.scalars(
                        select(tables.Delivery)
                        .where(tables.Delivery.delivery_id.in_({e.delivery_id for e in fresh}))
                        .with_for_update()
                    )
                    deliveries = {d.delivery_id: d for d in rows}
                    for event in fresh:
                        session.add(_event_row(event))
                        if event.delivery_id in deliveries:
                            _fold(deliveries[event.delivery_id], event)
                        else:
                            deliveries[event.delivery_id] = _delivery_row(event)
                            session.add(deliveries[event.delivery_id])
        except IntegrityError:
            return [CONFLICT_RETRY] * len(batch)
        return [ACK] * len(batch)


def _occurred(event: events_pb2.DeliveryEvent) -> datetime:
    return from_timestamp(event.occur_time) or now()


def _fold(delivery: tables.Delivery, event: events_pb2.DeliveryEvent) -> None:
    delivery.attempts = max(delivery.attempts, event.attempt)
    delivery.content = delivery.content or event.content
    delivery.template_id = delivery.template_id or event.template_id
    occurred = _occurred(event)
    new, current = RANK.get(event.state, 0), RANK.get(delivery.state, 0)
    if new > current or (new == current and occurred >= delivery.update_time):
        delivery.state = event.state
        delivery.reason = event.reason
        delivery.provider = event.provider or delivery.provider
        delivery.update_time = occurred


def _message_row(message: events_pb2.AcceptedMessage) -> tables.Message:
    return tables.Message(
        message_id=message.message_id,
        app_id=message.app_id,
        template_id=message.template.template_id,
        template_version=message.template.version,
        category=message.template.category,
        create_time=from_timestamp(message.create_time) or now(),
    )


def _event_row(event: events_pb2.DeliveryEvent) -> tables.Event:
    return tables.Event(
        event_id=event.event_id,
        delivery_id=event.delivery_id,
        state=event.state,
        attempt=event.attempt,
        reason=event.reason,
        provider=event.provider,
        occur_time=_occurred(event),
    )


def _delivery_row(event: events_pb2.DeliveryEvent) -> tables.Delivery:
    occurred = _occurred(event)
    return tables.Delivery(
        delivery_id=event.delivery_id,
        message_id=event.message_id,
        app_id=event.app_id,
        template_id=event.template_id,
        content=event.content,
        user_id=event.user_id,
        channel=event.channel,
        state=event.state,
        attempts=event.attempt,
        reason=event.reason,
        provider=event.provider,
        create_time=occurred,
        update_time=occurred,
    )
