"""The inbox channel's consumer (adapters-<category>-inbox): the delivery is the item stored in the user's
timeline, so it is SENT once that transaction commits, and acked only after; a redelivered job finds its item
and stores nothing. Then live Subscribe streams hear of the new sequences, and a user none is watching gets a
wake-up push if the template asks for one (wake.py)."""

import asyncio
from datetime import datetime

from herald.v1 import common_pb2
from sqlalchemy.exc import IntegrityError

from herald.internal.v1 import work_pb2
from herald.libs import delivery_jobs, events
from herald.libs.bus import ACK, Bus, Incoming, Outcome, in_own_trace
from herald.libs.store import Database
from herald.libs.timeutil import from_timestamp, now
from herald.services.adapters.inbox import notices, timeline_store, wake

# Two writers stored the same delivery at once (a job redelivered while its first copy was being stored): the
# loser stores its batch again shortly, and finds the item there.
CONFLICT_RETRY = 0.05
PROVIDER = "inbox"


class InboxWriter:
    def __init__(self, db: Database, bus: Bus, waker: wake.Waker) -> None:
        self._db = db
        self._bus = bus
        self._waker = waker

    async def handle(self, batch: list[Incoming]) -> list[Outcome]:
        pairs = [(i, j) for i in batch for j in delivery_jobs.read(i.data, i.headers)]
        jobs = [j for _, j in pairs]
        try:
            async with self._db.session.begin() as session:
                known = await timeline_store.stored(session, (j.delivery_id for j in jobs))
                fresh = {j.delivery_id: j for j in jobs if j.delivery_id not in known}
                expired = {i for i, j in fresh.items() if (at := from_timestamp(j.expire_at)) and at <= now()}
                appended = await timeline_store.append(session, [j for i, j in fresh.items() if i not in expired])
        except IntegrityError:
            return [CONFLICT_RETRY] * len(batch)
        stored_at = {item.delivery_id: item.create_time for items in appended.values() for item in items}
        await asyncio.gather(
            *(self._announce(i, j, j.delivery_id in expired, stored_at.get(j.delivery_id)) for i, j in pairs)
        )
        waking = {wake.owner_of(j): j for j in reversed(jobs) if j.HasField("wake")}
        for owner, items in appended.items():
            seqs = [i.seq for i in items]
            if (first := waking.get(owner)) is None:
                await notices.announce(self._bus, owner, seqs, changed=False)
            elif not await notices.announce_watched(self._bus, owner, seqs):
                await self._waker.unwatched(first)
        return [ACK] * len(batch)

    async def _announce(
        self, incoming: Incoming, job: work_pb2.DeliveryJob, expired: bool, stored_at: datetime | None
    ) -> None:
        """SENT as of when the item was stored: a device may get it (DELIVERED) before this is published."""
        with in_own_trace(incoming, job.traceparent):  # jobs of several Sends share a message
            if expired:
                await events.publish(
                    self._bus, events.event(job, common_pb2.DELIVERY_STATE_EXPIRED, reason="expire_at passed")
                )
            else:
                sent = common_pb2.DELIVERY_STATE_SENT
                await events.publish(
                    self._bus, events.event(job, sent, attempt=1, provider=PROVIDER, occur_time=stored_at)
                )
