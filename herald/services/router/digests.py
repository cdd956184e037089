"""Digests (Template.digest): a recipient's sends of a template within a window go out as one delivery.

A digest being collected is a row of router_digests, keyed by a hash of the app, template, digest key value,
recipient and channel, and each send collected into it a row of router_digest_items: adding one writes that row
and bumps the digest's counters, whatever the digest holds already. The send that opens a digest makes its NATS
schedule, herald.schedule.digest.<hash of the digest id>, whose small payload (DigestCollection: the digest id,
the opening delivery and the pinned template) the server fires at the window's end onto
herald.schedule.digested.<category>. The router then closes the digest - deletes its row and reads its items in
one transaction - so a send added meanwhile lands in it or in the next digest, never in neither (the add locks
the row by upserting it). The items are deleted once the digest's deliveries are published, so a fired digest
redelivered publishes the same deliveries again.

Sends collected at once (a batch of accepted messages) are written in one transaction per category, so a burst
into one digest costs a few statements, not a transaction a send, and keeps the database free for other apps'
messages. A digest lists at most MAX_LISTED items and MAX_LISTED_BYTES of their variables; the items past that
are counted and carried, not listed.
"""

import asyncio
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from herald.internal.v1 import work_pb2
from herald.libs import subjects, templating
from herald.libs.bus import Schedules
from herald.libs.store import Database
from herald.libs.timeutil import now, to_timestamp
from herald.services.router import jobs
from herald.services.router.tables import Base, Digest, DigestItem

# Items whose variables a digest keeps for `items`, and how many bytes of variables (as JSON) at most; later ones
# are counted and carried, not listed, so a digest stays small to store and to render. The first item is always
# listed: the digest renders with its variables.
MAX_LISTED = 500
MAX_LISTED_BYTES = 256 * 1024
ITEMS = Base.metadata.tables[DigestItem.__tablename__]


@dataclass
class _Send:
    """A send waiting to be collected, and where it was once written: the digest that carries it, when that is
    due, and whether it opened the digest (and so makes its schedule)."""

    message: work_pb2.AcceptedMessage
    job: work_pb2.DeliveryJob
    values: dict[str, str]
    key: str
    carrier: str = ""
    due: datetime | None = None
    opens: bool = False
    # What the batch's transaction failed with, so every send of the batch fails as it did (an outage stays one).
    error: Exception | None = None


class Digests:
    def __init__(self, db: Database, bus: Schedules) -> None:
        self._db = db
        self._bus = bus
        self._waiting: defaultdict[int, list[_Send]] = defaultdict(list)
        self._writing: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def add(
        self, message: work_pb2.AcceptedMessage, job: work_pb2.DeliveryJob, values: dict[str, str]
    ) -> tuple[str, datetime]:
        """Collect the delivery `job` into its digest (started if there is none); returns the delivery that will
        carry it and when. Idempotent: an item already collected is not added again."""
        send = _Send(message, job, values, _key(message, job, values))
        self._waiting[job.category].append(send)
        # One transaction at a time per category writes every send waiting by then: those that arrive while it
        # runs go together in the next.
        async with self._writing[job.category]:
            if batch := self._waiting.pop(job.category, []):
                try:
                    await self._write(batch)
                except Exception as e:
                    for written in batch:
                        written.error = e
        if send.error is not None:
            raise send.error
        if send.due is None:
            raise RuntimeError("the transaction collecting this send was interrupted")
        if send.opens:
            collection = work_pb2.DigestCollection(
                digest_id=send.carrier, job=job, template=message.template, due_time=to_timestamp(send.due)
            )
            await self._bus.schedule(
                subjects.digest(_hashed(send.carrier)),
                collection.SerializeToString(),
                send.due,
                subjects.digest_due(job.category),
            )
        return send.carrier, send.due

    async def _write(self, batch: list[_Send]) -> None:
        async with self._db.session.begin() as session:
            known = await session.execute(
                select(DigestItem.delivery_id, DigestItem.digest_id, Digest.due_time)
                .outerjoin(Digest, Digest.digest_id == DigestItem.digest_id)
                .where(DigestItem.delivery_id.in_([s.job.delivery_id for s in batch]))
            )
            by_delivery = {s.job.delivery_id: s for s in batch}
            for delivery_id, digest_id, due in known:  # collected before: a redelivered message
                send = by_delivery[delivery_id]
                send.carrier, send.due = digest_id, due or now()
                # An opener whose digest is still open makes its schedule again: the last time may have stopped
                # between the commit and the schedule.
                send.opens = due is not None and digest_id == delivery_id
            fresh: defaultdict[str, list[_Send]] = defaultdict(list)
            for send in batch:
                if send.due is None:
                    fresh[send.key].append(send)
            items = []
            # Digests in key order, so that routers writing the same ones at once lock them in the same order.
            for key in sorted(fresh):
                items += await self._add_to(session, key, fresh[key])
            await self._db.insert_rows(session, ITEMS, items, key=("delivery_id",))

    async def _add_to(self, session: AsyncSession, key: str, sends: list[_Send]) -> list[dict[str, object]]:
        """Open the digest `key` or lock the open one, and count `sends` into it; their rows, to insert."""
        first = sends[0]
        window = first.message.template.digest.window.ToTimedelta()
        dialect = sqlite if self._db.is_sqlite else postgresql
        opening = dialect.insert(Digest).values(
            digest_key=key, digest_id=first.job.delivery_id, due_time=now() + window, items=0, listed=0, listed_bytes=0
        )
        row = (
            await session.execute(
                opening.on_conflict_do_update(
                    index_elements=[Digest.digest_key], set_={"items": Digest.items}
                ).returning(Digest.digest_id, Digest.due_time, Digest.items, Digest.listed, Digest.listed_bytes)
            )
        ).one()
        digest_id, due, position, listed, listed_bytes = row
        items = []
        for send in sends:
            size = len(json.dumps(send.values).encode())
            lists = position == 0 or (listed < MAX_LISTED and listed_bytes + size <= MAX_LISTED_BYTES)
            if lists:
                listed, listed_bytes = listed + 1, listed_bytes + size
            items.append(
                {
                    "delivery_id": send.job.delivery_id,
                    "digest_id": digest_id,
                    "position": position,
                    "message_id": send.job.message_id,
                    "user_id": send.job.user_id,
                    "variables": send.values if lists else None,
                    "create_time": now(),
                }
            )
            send.carrier, send.due, send.opens = digest_id, due, send.job.delivery_id == digest_id
            position += 1
        await session.execute(
            update(Digest)
            .where(Digest.digest_key == key)
            .values(items=position, listed=listed, listed_bytes=listed_bytes)
        )
        return items

    async def close(self, collection: work_pb2.DigestCollection) -> list[work_pb2.DigestItem]:
        """The items of a digest whose window ended, in the order they came; the digest is closed, so the next
        send starts a new one. Empty when they were published already (or erased with their user)."""
        if not collection.digest_id:
            return list(collection.items)
        async with self._db.session.begin() as session:
            await session.execute(delete(Digest).where(Digest.digest_id == collection.digest_id))
            rows = await session.scalars(
                select(DigestItem).where(DigestItem.digest_id == collection.digest_id).order_by(DigestItem.position)
            )
            return [
                work_pb2.DigestItem(
                    delivery_id=r.delivery_id,
                    message_id=r.message_id,
                    variables=r.variables or {},
                    create_time=to_timestamp(r.create_time),
                )
                for r in rows
            ]

    async def forget(self, collection: work_pb2.DigestCollection) -> None:
        """Drop a digest's items once its deliveries are published."""
        async with self._db.session.begin() as session:
            await session.execute(delete(DigestItem).where(DigestItem.digest_id == collection.digest_id))


def ready(
    collection: work_pb2.DigestCollection, items: list[work_pb2.DigestItem]
) -> tuple[jobs.Step, list[work_pb2.DeliveryJob]]:
    """The digest's delivery rendered over every item, and the other items' deliveries, which it carries."""
    listed = [dict(i.variables) for i in items if i.variables]
    values = templating.digest_values(listed[0] if listed else {}, listed, len(items))
    job = work_pb2.DeliveryJob()
    job.CopyFrom(collection.job)
    unrenderable = next(
        (why for step in (job, *job.fallback) if (why := jobs.render(step, collection.template, values, step.locale))),
        "",
    )
    if job.HasField("wake"):
        job.wake.subject, job.wake.body = job.subject, job.body
    carried = []
    for item in items:
        if item.delivery_id != job.delivery_id:
            other = work_pb2.DeliveryJob(
                delivery_id=item.delivery_id,
                message_id=item.message_id,
                app_id=job.app_id,
                template_id=job.template_id,
                category=job.category,
                user_id=job.user_id,
                channel=job.channel,
            )
            carried.append(other)
    return (job, unrenderable), carried


def _key(message: work_pb2.AcceptedMessage, job: work_pb2.DeliveryJob, values: dict[str, str]) -> str:
    """One digest per app, template, value of the digest key, recipient and channel."""
    digest_key = values.get(message.template.digest.key, "") if message.template.digest.key else ""
    who = job.user_id or job.address
    parts = (message.app_id, message.template.template_id, digest_key, who, job.channel)
    return _hashed("\x00".join(parts))


def _hashed(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]
