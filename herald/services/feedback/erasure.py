"""feedback forgets an erased user (herald.event.user.erased): the user's id and the rendered content of their
deliveries are blanked, so no status, search or export shows them; states, times and statistics stay.

A delivery in flight at the erasure (held for quiet hours, retrying) still sends events naming the user. So the
erasure is remembered (feedback_erased_users), and an event of an erased user for a message accepted before the
erasure is recorded without the user's id and content. Each replica learns of erasures from the table within
REFRESH seconds (the replica that handles the erasure, at once). A message accepted after the erasure is a new
one, and is recorded as any other: the member system sent it to that user id again.
"""

from datetime import datetime, timedelta

from herald.v1 import events_pb2
from sqlalchemy import select, update

from herald.libs.bus import Incoming
from herald.libs.ids import created_at
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.feedback import tables

ERASED = tables.Base.metadata.tables["feedback_erased_users"]
# How often each replica reads the erasures other replicas recorded.
REFRESH = 2.0
# Read erasures this much older than the last one seen too: a transaction that committed late still shows.
OVERLAP = timedelta(minutes=1)


class Erasures:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._erased: dict[str, datetime] = {}
        self._seen_until: datetime | None = None

    async def forget(self, incoming: Incoming) -> None:
        """Idempotent: a redelivered event finds nothing left to blank, and its erasure already remembered."""
        user_id = events_pb2.UserErasedEvent.FromString(incoming.data).user_id
        if not user_id:
            return
        when = now()
        async with self._db.session.begin() as session:
            await self._db.insert_rows(session, ERASED, [{"user_id": user_id, "erase_time": when}], key=["user_id"])
            await session.execute(
                update(tables.Delivery).where(tables.Delivery.user_id == user_id).values(user_id="", content="")
            )
        self._erased.setdefault(user_id, when)

    async def refresh(self) -> None:
        """Learn the erasures other replicas recorded since the last reading."""
        erased = select(tables.ErasedUser.user_id, tables.ErasedUser.erase_time)
        if self._seen_until is not None:
            erased = erased.where(tables.ErasedUser.erase_time >= self._seen_until - OVERLAP)
        async with self._db.session() as session:
            rows = (await session.execute(erased)).all()
        for user_id, erase_time in rows:
            self._erased.setdefault(user_id, erase_time)
            self._seen_until = max(self._seen_until or erase_time, erase_time)

    def scrub(self, event: events_pb2.DeliveryEvent) -> events_pb2.DeliveryEvent:
        """The event as feedback may record it: without an erased user's id and content."""
        erased = self._erased.get(event.user_id) if self._erased else None
        if erased is None:
            return event
        accepted = created_at(event.message_id)
        if accepted is not None and accepted > erased:
            return event
        scrubbed = events_pb2.DeliveryEvent()
        scrubbed.CopyFrom(event)
        scrubbed.user_id, scrubbed.content = "", ""
        return scrubbed
