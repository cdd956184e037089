"""intake forgets a stored message - its payload carries the recipients' addresses - once nothing needs it: past
the idempotency window, and past its send time if it was scheduled. Run against each backend's real store."""

from datetime import datetime, timedelta

from sqlalchemy import select

from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.intake import retention, tables


async def _store(db: Database, message_id: str, created: datetime, send_at: datetime | None, parts: int) -> None:
    async with db.session.begin() as session:
        session.add(
            tables.Message(
                message_id=message_id,
                app_id="app_x",
                idempotency_key=f"key-{message_id}",
                template_id="t",
                template_version=1,
                payload=b"+15550001111",
                create_time=created,
                send_at=send_at,
                cancel_time=None,
                parts=parts,
            )
        )
        session.add_all(tables.MessagePart(message_id=message_id, part=p, payload=b"a@b.example") for p in range(parts))


async def test_stored_messages_go_once_their_key_and_their_send_time_are_past(database_url: str) -> None:
    db = await Database.open(database_url, "intake")
    try:
        two_days_ago = now() - timedelta(days=2)
        await _store(db, "msg_spent", two_days_ago, None, 0)
        await _store(db, "msg_spent_audience", two_days_ago, None, 3)
        await _store(db, "msg_sent_yesterday_noon", two_days_ago, now() - timedelta(days=1, hours=12), 0)
        await _store(db, "msg_fresh_key", now() - timedelta(hours=2), None, 0)
        await _store(db, "msg_waits_until_tomorrow", two_days_ago, now() + timedelta(days=1), 2)

        assert await retention.purge(db) == 3
        assert await retention.purge(db) == 0, "a second purge (another replica) finds nothing left"

        async with db.session() as session:
            kept = set(await session.scalars(select(tables.Message.message_id)))
            parts = set(await session.scalars(select(tables.MessagePart.message_id)))
        assert kept == {"msg_fresh_key", "msg_waits_until_tomorrow"}
        assert parts == {"msg_waits_until_tomorrow"}, "an audience's parts go with their message"
    finally:
        await db.close()
