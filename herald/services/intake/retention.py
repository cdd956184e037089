"""intake keeps a message's row - its payload, with the recipients' addresses and variables - only while it has
a use: the idempotency key's window, and a scheduled message's wait (CancelMessage withdraws it from the row).
Past both, JetStream and feedback hold the message's story, and the row is deleted."""

from sqlalchemy import or_, select

from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.intake import tables
from herald.services.intake.accepted_queue import IDEMPOTENCY_WINDOW

M = tables.Message


async def purge(db: Database) -> int:
    """Idempotent: replicas purging at once only repeat each other's no-op."""
    cutoff = now() - IDEMPOTENCY_WINDOW
    spent = select(M.message_id).where(M.create_time < cutoff, or_(M.send_at.is_(None), M.send_at < cutoff))
    return await db.purge(spent, tables.MessagePart.message_id, M.message_id)
