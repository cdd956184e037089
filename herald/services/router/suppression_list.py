"""The suppression list (router_suppressions): addresses herald does not send to, whoever the recipient.

Routing asks it about every delivery that has an address (suppression.py's "suppressed" rule), a fetched batch at a
time (batched_reads.py). An entry for category 0 covers every category, critical included: a mailbox that does not
exist or a phone that texted STOP cannot be reached by a login code either, so the next channel of its chain is
tried instead. Every change is published (SuppressionEvent) for the member system.
"""

from collections.abc import Iterable
from datetime import datetime

from herald.v1 import common_pb2, events_pb2, suppression_service_pb2
from sqlalchemy import bindparam, delete, select, tuple_

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus.interfaces import Publisher
from herald.libs.store import Database
from herald.libs.timeutil import now, to_timestamp
from herald.services.router import tables
from herald.services.router.batched_reads import BatchedReader

R = suppression_service_pb2.SuppressionReason
_SAYS: dict[int, str] = {
    R.SUPPRESSION_REASON_HARD_BOUNCE: "the mailbox bounced for good",
    R.SUPPRESSION_REASON_SOFT_BOUNCES: "too many temporary bounces",
    R.SUPPRESSION_REASON_COMPLAINT: "the reader reported a mail as spam",
    R.SUPPRESSION_REASON_UNSUBSCRIBED: "the reader unsubscribed",
    R.SUPPRESSION_REASON_SMS_STOP: "the phone replied STOP",
    R.SUPPRESSION_REASON_MANUAL: "an operator added it",
}
Key = tuple[str, str]
Entries = dict[Key, list[tables.Suppression]]

# Built once, as directory.USERS: the entries of (channel, address) keys.
ENTRIES = select(tables.Suppression).where(
    tuple_(tables.Suppression.channel, tables.Suppression.address).in_(bindparam("keys", expanding=True))
)


def normal(channel: str, address: str) -> str:
    """E-mail addresses are compared without case (what providers report is often lower-cased)."""
    return address.strip().lower() if channel == "email" else address.strip()


def to_proto(row: tables.Suppression) -> suppression_service_pb2.Suppression:
    return suppression_service_pb2.Suppression(
        channel=row.channel,
        address=row.address,
        category=common_pb2.Category.ValueType(row.category),
        reason=R.ValueType(row.reason),
        source=row.source,
        detail=row.detail,
        create_time=to_timestamp(row.create_time),
    )


class Listed:
    """What the suppression list says of the addresses asked about (SuppressionList.lookup)."""

    def __init__(self, entries: Entries) -> None:
        self._entries = entries

    def reason(self, job: work_pb2.DeliveryJob) -> str:
        """Why this delivery's address is suppressed; "" when it is not."""
        if not job.address:
            return ""
        for row in self._entries.get((job.channel, normal(job.channel, job.address)), []):
            if row.category in (common_pb2.CATEGORY_UNSPECIFIED, job.category):
                when = row.create_time.isoformat(timespec="seconds")
                says = _SAYS.get(row.reason, "suppressed") + (f": {row.detail}" if row.detail else "")
                return f"the address is on the suppression list since {when} (by {row.source}; {says})"
        return ""


class SuppressionList:
    def __init__(self, db: Database, bus: Publisher) -> None:
        self._db = db
        self._bus = bus
        self._reader = BatchedReader[Key, Entries](self._entries)

    async def lookup(self, jobs: Iterable[work_pb2.DeliveryJob]) -> "Listed":
        """The entries of the addresses `jobs` are for, read at once: routing asks about a batch's deliveries and
        every fallback of their chains before its rules run."""
        keys = {(job.channel, normal(job.channel, job.address)) for job in jobs if job.address}
        return Listed(await self._reader.load(keys) if keys else {})

    async def add(
        self, entry: suppression_service_pb2.Suppression, event_id: str, when: datetime | None = None
    ) -> suppression_service_pb2.Suppression:
        """Add or replace the entry, then publish it; a repeat of `event_id` publishes nothing new."""
        address = normal(entry.channel, entry.address)
        async with self._db.session.begin() as session:
            key = (entry.channel, address, entry.category)
            row = await session.get(tables.Suppression, key, with_for_update=True)
            if row is None:
                row = tables.Suppression(channel=entry.channel, address=address, category=entry.category)
                session.add(row)
            row.reason, row.source, row.detail = entry.reason, entry.source[:200], entry.detail[:1000]
            row.create_time = when or now()
            added = to_proto(row)
        await self._publish(subjects.SUPPRESSION_ADDED, added, event_id)
        return added

    async def remove(
        self, channel: str, address: str, category: int, event_id: str, only_reason: int = 0
    ) -> suppression_service_pb2.Suppression | None:
        """Remove the entry (only if its reason is `only_reason`, when given) and publish that; None if none was."""
        key = (channel, normal(channel, address), category)
        async with self._db.session.begin() as session:
            row = await session.get(tables.Suppression, key, with_for_update=True)
            if row is None or (only_reason and row.reason != only_reason):
                return None
            removed = to_proto(row)
            await session.execute(
                delete(tables.Suppression).where(
                    tables.Suppression.channel == key[0],
                    tables.Suppression.address == key[1],
                    tables.Suppression.category == key[2],
                )
            )
        await self._publish(subjects.SUPPRESSION_REMOVED, removed, event_id)
        return removed

    async def _publish(self, subject: str, entry: suppression_service_pb2.Suppression, event_id: str) -> None:
        event = events_pb2.SuppressionEvent(event_id=event_id, suppression=entry, occur_time=to_timestamp(now()))
        await self._bus.publish(subject, event.SerializeToString(), msg_id=event_id)

    async def _entries(self, keys: set[Key]) -> Entries:
        found: Entries = {}
        async with self._db.session() as session:
            rows = await session.scalars(ENTRIES, {"keys": sorted(keys)})
            for row in rows:
                found.setdefault((row.channel, row.address), []).append(row)
        return found
