"""The inbox timeline in the adapters' database.

Sequences: storing items raises the users' counters in the same transaction (one INSERT ... ON CONFLICT DO
UPDATE ... RETURNING for every user of a batch, creating the counters of first items), so a rolled-back write
leaves no gap, and concurrent writers - in this process or another - queue on the counter rows (PostgreSQL's row
locks, SQLite's write lock) rather than hand out one number twice.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from herald.internal.v1 import work_pb2
from herald.libs.timeutil import now
from herald.services.adapters import tables

Item = tables.InboxItem


@dataclass(frozen=True)
class Owner:
    """Whose timeline: an app's user (timelines are per app, so an app reads only its own)."""

    app_id: str
    user_id: str


async def stored(session: AsyncSession, delivery_ids: Iterable[str]) -> set[str]:
    """Which of these deliveries are in a timeline already."""
    return set(await session.scalars(select(Item.delivery_id).where(Item.delivery_id.in_(set(delivery_ids)))))


async def append(session: AsyncSession, jobs: Sequence[work_pb2.DeliveryJob]) -> dict[Owner, list[Item]]:
    """Store each job (none stored before) as the next item of its user's timeline; returns what was stored."""
    by_owner: dict[Owner, list[work_pb2.DeliveryJob]] = {}
    for job in jobs:
        by_owner.setdefault(Owner(job.app_id, job.address or job.user_id), []).append(job)
    highest = await _reserve(session, {owner: len(owned) for owner, owned in by_owner.items()})
    appended: dict[Owner, list[Item]] = {}
    for owner, owned in by_owner.items():
        last = highest[owner]
        items = [_item(owner, last - len(owned) + n + 1, job) for n, job in enumerate(owned)]
        session.add_all(items)
        appended[owner] = items
    return appended


async def _reserve(session: AsyncSession, counts: dict[Owner, int]) -> dict[Owner, int]:
    """Raise each owner's counter by its count, creating those of first items, in one statement (a topic's
    fan-out stores a thousand users' first items at once); returns each owner's new highest sequence. Owners go
    in key order, so two writers lock the counters they share in the same order. A batch with nothing new (a
    redelivery) raises nothing: an upsert of no rows is no SQL SQLite accepts."""
    if not counts:
        return {}
    table = tables.InboxCounter.__table__
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["app_id", "user_id"], set_={"max_seq": table.c.max_seq + statement.excluded.max_seq}
    ).returning(table.c.app_id, table.c.user_id, table.c.max_seq)
    rows = [{"app_id": o.app_id, "user_id": o.user_id, "max_seq": n} for o, n in sorted(counts.items(), key=_key)]
    raised = await session.execute(statement.values(rows))
    return {Owner(app_id, user_id): int(max_seq) for app_id, user_id, max_seq in raised}


def _key(entry: tuple[Owner, int]) -> tuple[str, str]:
    return entry[0].app_id, entry[0].user_id


def _item(owner: Owner, seq: int, job: work_pb2.DeliveryJob) -> Item:
    return Item(
        app_id=owner.app_id,
        user_id=owner.user_id,
        seq=seq,
        delivery_id=job.delivery_id,
        message_id=job.message_id,
        title=job.subject,
        body=job.body,
        data=dict(job.data),
        create_time=now(),
    )


async def after(session: AsyncSession, owner: Owner, after_seq: int, limit: int) -> list[Item]:
    rows = await session.scalars(
        select(Item)
        .where(Item.app_id == owner.app_id, Item.user_id == owner.user_id, Item.seq > after_seq)
        .order_by(Item.seq)
        .limit(limit)
    )
    return list(rows)


async def by_seq(session: AsyncSession, owner: Owner, seqs: Iterable[int]) -> list[Item]:
    rows = await session.scalars(
        select(Item)
        .where(Item.app_id == owner.app_id, Item.user_id == owner.user_id, Item.seq.in_(set(seqs)))
        .order_by(Item.seq)
    )
    return list(rows)


async def max_seq(session: AsyncSession, owner: Owner) -> int:
    value = await session.scalar(
        select(tables.InboxCounter.max_seq).where(
            tables.InboxCounter.app_id == owner.app_id, tables.InboxCounter.user_id == owner.user_id
        )
    )
    return int(value or 0)


async def unread_count(session: AsyncSession, owner: Owner) -> int:
    value = await session.scalar(
        select(func.count()).where(
            Item.app_id == owner.app_id,
            Item.user_id == owner.user_id,
            Item.read_time.is_(None),
            Item.delete_time.is_(None),
        )
    )
    return int(value or 0)


async def unread(session: AsyncSession, owner: Owner, seqs: Iterable[int] = (), up_to_seq: int = 0) -> list[Item]:
    """The owner's unread, undeleted items among `seqs` and up to `up_to_seq`, locked for marking."""
    chosen = or_(Item.seq.in_(set(seqs)), Item.seq <= up_to_seq)
    rows = await session.scalars(
        select(Item)
        .where(
            Item.app_id == owner.app_id,
            Item.user_id == owner.user_id,
            Item.read_time.is_(None),
            Item.delete_time.is_(None),
            chosen,
        )
        .with_for_update()
    )
    return list(rows)


def delivered(items: Iterable[Item], when: datetime) -> list[Item]:
    """Note that a device got these items; returns the ones it got for the first time."""
    first = [i for i in items if i.deliver_time is None and i.delete_time is None]
    for item in first:
        item.deliver_time = when
    return first
