"""feedback forgets an erased user (herald.event.user.erased): the user's id and the rendered content of their
deliveries are blanked, so no status, search or export shows them; states, times and statistics stay."""

from herald.v1 import events_pb2
from sqlalchemy import update

from libs.bus import Incoming
from libs.store import Database
from services.feedback import tables


async def forget(db: Database, incoming: Incoming) -> None:
    """Idempotent: a redelivered event finds nothing left to blank."""
    user_id = events_pb2.UserErasedEvent.FromString(incoming.data).user_id
    if not user_id:
        return
    async with db.session.begin() as session:
        await session.execute(
            update(tables.Delivery).where(tables.Delivery.user_id == user_id).values(user_id="", content="")
        )
