"""Digests (Template.digest): a recipient's sends of a template within a window go out as one delivery.

A digest being collected is the payload of its own NATS schedule, herald.schedule.digest.<key>, where the key
hashes the app, template, digest key value, recipient and channel. Adding an item replaces the schedule by
compare-and-set on its sequence, so routers adding to the same digest at once never lose one, and the collected
items live in JetStream, surviving restarts of every process. The server fires the schedule at the window's end
onto herald.schedule.digested.<category>; the schedule is gone then, so the next send starts a new digest.
"""

import hashlib
from datetime import datetime

from herald.v1 import events_pb2

from libs import subjects, templating
from libs.bus import Bus, ScheduleChanged
from libs.timeutil import from_timestamp, now, to_timestamp
from services.router import jobs

# Compare-and-set rounds before giving up (the message is retried): each lost round means another router added
# an item to the same digest in between.
CAS_ROUNDS = 20
# Items whose variables a digest keeps for `items`; later ones are counted and carried, not listed, so that a
# digest stays well inside a NATS message.
MAX_LISTED = 500


class Digests:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def add(
        self, message: events_pb2.AcceptedMessage, job: events_pb2.DeliveryJob, values: dict[str, str]
    ) -> tuple[str, datetime]:
        """Collect the delivery `job` into its digest (started if there is none); returns the delivery that will
        carry it and when. Idempotent: an item already collected is not added again."""
        subject = subjects.digest(_key(message, job, values))
        item = events_pb2.DigestItem(
            delivery_id=job.delivery_id, message_id=job.message_id, create_time=to_timestamp(now())
        )
        for _ in range(CAS_ROUNDS):
            found = await self._bus.scheduled(subject)
            if found is None:
                due = now() + message.template.digest.window.ToTimedelta()
                collection = events_pb2.DigestCollection(job=job, template=message.template, due_time=to_timestamp(due))
            else:
                collection = events_pb2.DigestCollection.FromString(found.payload)
            due = from_timestamp(collection.due_time) or now()
            if any(i.delivery_id == item.delivery_id for i in collection.items):
                return collection.job.delivery_id, due
            if len(collection.items) < MAX_LISTED:
                item.variables.update(values)
            collection.items.append(item)
            target = subjects.digest_due(job.category)
            try:
                await self._bus.schedule(
                    subject, collection.SerializeToString(), due, target, replacing=found.sequence if found else 0
                )
            except ScheduleChanged:
                continue
            return collection.job.delivery_id, due
        raise ScheduleChanged(subject)


def ready(collection: events_pb2.DigestCollection) -> tuple[jobs.Step, list[events_pb2.DeliveryJob]]:
    """The digest's delivery rendered over every item, and the other items' deliveries, which it carries."""
    listed = [dict(i.variables) for i in collection.items if i.variables]
    values = templating.digest_values(listed[0] if listed else {}, listed, len(collection.items))
    job = events_pb2.DeliveryJob()
    job.CopyFrom(collection.job)
    unrenderable = next(
        (why for step in (job, *job.fallback) if (why := jobs.render(step, collection.template, values, step.locale))),
        "",
    )
    if job.HasField("wake"):
        job.wake.subject, job.wake.body = job.subject, job.body
    carried = []
    for item in collection.items:
        if item.delivery_id != job.delivery_id:
            other = events_pb2.DeliveryJob(
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


def _key(message: events_pb2.AcceptedMessage, job: events_pb2.DeliveryJob, values: dict[str, str]) -> str:
    """One digest per app, template, value of the digest key, recipient and channel."""
    digest_key = values.get(message.template.digest.key, "") if message.template.digest.key else ""
    who = job.user_id or job.address
    parts = (message.app_id, message.template.template_id, digest_key, who, job.channel)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
