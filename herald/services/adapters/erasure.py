"""The adapters forget an erased user (herald.event.user.erased): their inbox, and their id on delivery records."""

from herald.v1 import events_pb2
from sqlalchemy import delete, update

from herald.libs.bus import Incoming
from herald.libs.store import Database
from herald.services.adapters import tables


async def forget(db: Database, incoming: Incoming) -> None:
    """Idempotent: a redelivered event finds nothing left to forget."""
    user_id = events_pb2.UserErasedEvent.FromString(incoming.data).user_id
    if not user_id:
        return
    async with db.session.begin() as session:
        await session.execute(delete(tables.InboxItem).where(tables.InboxItem.user_id == user_id))
        await session.execute(delete(tables.InboxCounter).where(tables.InboxCounter.user_id == user_id))
        await session.execute(update(tables.Delivery).where(tables.Delivery.user_id == user_id).values(user_id=""))
