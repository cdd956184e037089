"""Offline push for the inbox (Template.offline_push): a user nobody is watching gets one app push for a burst of
new items, with their unread count as the badge.

Whether anyone is watching is asked of the live Subscribe streams themselves: the writer announces new items as a
core NATS request, which every stream of the user on every replica answers, and which the server answers with
"no responders" at once when there is none. Then a wake-up is scheduled in NATS at the end of a short window,
created only if the user has none pending (compare-and-set on its subject), so the items of a burst share it and
it survives restarts. When it fires, a user who connected meanwhile, or has nothing unread, gets nothing; anyone
else gets the push the router addressed and rendered for the first item (DeliveryJob.wake), queued for its
channel like any delivery, as a delivery of that item's message.
"""

import contextlib
from datetime import timedelta

from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs import delivery_jobs, events, subjects
from herald.libs.bus import Bus, Incoming, ScheduleChanged
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.adapters.inbox import notices, timeline_store
from herald.services.adapters.inbox.timeline_store import Owner

# Items within this long of the first unseen one share its push.
WINDOW = timedelta(seconds=5)


def owner_of(job: work_pb2.DeliveryJob) -> Owner:
    return Owner(job.app_id, job.address or job.user_id)


class Waker:
    def __init__(self, db: Database, bus: Bus) -> None:
        self._db = db
        self._bus = bus

    async def unwatched(self, job: work_pb2.DeliveryJob) -> None:
        """An item was stored for a user with no live stream: a wake-up at the window's end, unless one is due."""
        owner = owner_of(job)
        subject = subjects.wake(owner.app_id, notices.user_key(owner))
        # ScheduleChanged: a wake-up is due already, and will count this item too.
        with contextlib.suppress(ScheduleChanged):
            await self._bus.schedule(
                subject, job.SerializeToString(), now() + WINDOW, subjects.wake_due(job.category), replacing=0
            )

    async def on_due(self, incoming: Incoming) -> None:
        job = work_pb2.DeliveryJob.FromString(incoming.data)
        owner = owner_of(job)
        if await notices.announce_watched(self._bus, owner, ()):
            return  # a device connected meanwhile: it has the items
        async with self._db.session() as session:
            unread = await timeline_store.unread_count(session, owner)
        if not unread:
            return
        push = job.wake
        push.badge = unread
        await events.publish(self._bus, events.event(push, common_pb2.DELIVERY_STATE_PENDING))
        await delivery_jobs.queue(self._bus, push)
