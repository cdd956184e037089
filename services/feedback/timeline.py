"""Feedback's consumers: record accepted messages and fold delivery events into each delivery's state.

Both are idempotent: a message or event id seen before changes nothing. Events
may arrive out of order (two producers, redeliveries), so a delivery's state only
moves forward by rank; among equal ranks the later event wins.
"""

from datetime import datetime

from herald.v1 import common_pb2, events_pb2
from sqlalchemy.exc import IntegrityError

from libs.bus import Incoming, RetryLater
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.feedback import tables

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

    async def on_message(self, incoming: Incoming) -> None:
        message = events_pb2.AcceptedMessage.FromString(incoming.data)
        async with self._db.session() as session:
            if await session.get(tables.Message, message.message_id) is not None:
                return
        row = tables.Message(
            message_id=message.message_id,
            app_id=message.app_id,
            template_id=message.template.template_id,
            template_version=message.template.version,
            category=message.template.category,
            create_time=from_timestamp(message.create_time) or now(),
        )
        try:
            async with self._db.session.begin() as session:
                session.add(row)
        except IntegrityError:
            return  # a concurrent redelivery recorded it first

    async def on_event(self, incoming: Incoming) -> None:
        event = events_pb2.DeliveryEvent.FromString(incoming.data)
        occurred = from_timestamp(event.occur_time) or now()
        try:
            async with self._db.session.begin() as session:
                if await session.get(tables.Event, event.event_id) is not None:
                    return
                session.add(
                    tables.Event(
                        event_id=event.event_id,
                        delivery_id=event.delivery_id,
                        state=event.state,
                        attempt=event.attempt,
                        reason=event.reason,
                        provider=event.provider,
                        occur_time=occurred,
                    )
                )
                delivery = await session.get(tables.Delivery, event.delivery_id, with_for_update=True)
                if delivery is None:
                    session.add(
                        tables.Delivery(
                            delivery_id=event.delivery_id,
                            message_id=event.message_id,
                            user_id=event.user_id,
                            channel=event.channel,
                            state=event.state,
                            attempts=event.attempt,
                            reason=event.reason,
                            provider=event.provider,
                            create_time=occurred,
                            update_time=occurred,
                        )
                    )
                    return
                delivery.attempts = max(delivery.attempts, event.attempt)
                if _supersedes(event.state, occurred, delivery):
                    delivery.state = event.state
                    delivery.reason = event.reason
                    delivery.provider = event.provider or delivery.provider
                    delivery.update_time = occurred
        except IntegrityError as e:
            # Two events of one new delivery raced to create its row: fold this one in again.
            raise RetryLater(0.05, "concurrent insert") from e


def _supersedes(state: int, occurred: datetime, delivery: tables.Delivery) -> bool:
    new, current = RANK.get(state, 0), RANK.get(delivery.state, 0)
    return new > current or (new == current and occurred >= delivery.update_time)
