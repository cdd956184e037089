"""The router's consumer: turn one accepted message into one delivery job per recipient x channel.

Redelivery-safe without a table of its own: delivery ids are derived from the
message id and the job's position, and every publish carries a Nats-Msg-Id, so
running the same message twice queues nothing twice.
"""

import asyncio

from herald.v1 import common_pb2, events_pb2, message_service_pb2

from libs import channels, events, templating
from libs.bus import Bus, Incoming
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.router import tables
from services.router.directory import load_users

SUBJECT = "herald.message.accepted"
JOB_SUBJECT_PREFIX = "herald.delivery."
PUBLISH_CONCURRENCY = 64


class Fanout:
    def __init__(self, db: Database, bus: Bus) -> None:
        self._db = db
        self._bus = bus
        self._publishing = asyncio.Semaphore(PUBLISH_CONCURRENCY)

    async def handle(self, incoming: Incoming) -> None:
        message = events_pb2.AcceptedMessage.FromString(incoming.data)
        users = await load_users(self._db, {r.user_id for r in message.recipients if r.user_id})
        expired = (expire_at := from_timestamp(message.expire_at)) is not None and expire_at <= now()
        steps = []
        n = 0
        for recipient in message.recipients:
            for channel in message.channels:
                job, unrenderable = _job(message, recipient, channel, n, users.get(recipient.user_id))
                steps.append(self._dispatch(job, expired, unrenderable))
                n += 1
        await asyncio.gather(*steps)

    async def _dispatch(self, job: events_pb2.DeliveryJob, expired: bool, unrenderable: str) -> None:
        async with self._publishing:
            if unrenderable:
                await events.publish(self._bus, job, common_pb2.DELIVERY_STATE_FAILED, reason=unrenderable)
            elif expired:
                await events.publish(
                    self._bus, job, common_pb2.DELIVERY_STATE_EXPIRED, reason="expire_at passed before routing"
                )
            elif not job.address:
                reason = f"no {job.channel} address: none in the request"
                reason += f" and none in the directory for user '{job.user_id}'" if job.user_id else ""
                await events.publish(self._bus, job, common_pb2.DELIVERY_STATE_SUPPRESSED, reason=reason)
            else:
                # PENDING goes first so feedback never sees a delivery's outcome before it exists.
                await events.publish(self._bus, job, common_pb2.DELIVERY_STATE_PENDING)
                await self._bus.publish(JOB_SUBJECT_PREFIX + job.channel, job.SerializeToString(), job.delivery_id)


def _job(
    message: events_pb2.AcceptedMessage,
    recipient: message_service_pb2.Recipient,
    channel: str,
    n: int,
    user: tables.User | None,
) -> tuple[events_pb2.DeliveryJob, str]:
    """The job for one recipient x channel, and why it cannot be rendered ("" when it can).

    intake render-checked the same template and variables, so a failure here means
    a bug, reported on the delivery rather than retried forever.
    """
    address = recipient.addresses.get(channel) or (user.addresses.get(channel) if user else None) or ""
    if not address and channel in channels.ADDRESSED_BY_USER_ID:
        address = recipient.user_id
    content = next(c for c in message.template.contents if c.channel == channel)
    values = {**message.variables, **recipient.variables}
    job = events_pb2.DeliveryJob(
        delivery_id=f"{message.message_id}.{n}",
        message_id=message.message_id,
        app_id=message.app_id,
        template_id=message.template.template_id,
        category=message.template.category,
        user_id=recipient.user_id,
        channel=channel,
        address=address,
        expire_at=message.expire_at,
    )
    try:
        job.subject = templating.render(content.subject, values)
        job.body = templating.render(content.body, values)
    except templating.TemplateError as e:
        return job, f"cannot render the template: {e}"
    return job, ""
