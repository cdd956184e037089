"""The router's consumers: turn an accepted message into one delivery job per recipient x channel, now or at send_at.

- herald.message.accepted: due now -> dispatch; send_at ahead -> every delivery
  SCHEDULED and a schedule definition in HERALD_SCHEDULES, which the NATS
  server fires at send_at onto herald.schedule.due (so a scheduled message
  survives restarts of every process and of the server).
- herald.schedule.due: dispatch.
- herald.message.cancelled: every delivery CANCELLED.

Dispatching first takes the message's decision in the dispatch ledger, so a
cancel that won the race is honoured. Redelivery-safe without a table of its
own: delivery ids are derived from the message id and the job's position, and
every publish carries a Nats-Msg-Id, so running the same message twice queues
nothing twice.
"""

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf import json_format
from herald.v1 import common_pb2, events_pb2, message_service_pb2

from libs import channels, events, quiet_hours, subjects, templating
from libs.bus import Bus, Incoming
from libs.dispatch import Decision, DispatchLedger
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.router import preferences, tables
from services.router.dedup import ContentDedup
from services.router.directory import load_users
from services.router.frequency import FrequencyCaps

PUBLISH_CONCURRENCY = 64
# A send_at closer than this is sent now.
SCHEDULE_THRESHOLD = timedelta(seconds=1)

S = common_pb2


class Router:
    def __init__(
        self, db: Database, bus: Bus, ledger: DispatchLedger, dedup: ContentDedup, caps: FrequencyCaps
    ) -> None:
        self._db = db
        self._bus = bus
        self._ledger = ledger
        self._dedup = dedup
        self._caps = caps
        self._publishing = asyncio.Semaphore(PUBLISH_CONCURRENCY)

    async def on_accepted(self, incoming: Incoming) -> None:
        message = events_pb2.AcceptedMessage.FromString(incoming.data)
        send_at = from_timestamp(message.send_at)
        if send_at is not None and send_at > now() + SCHEDULE_THRESHOLD:
            await self._hold(message, incoming.data, send_at)
        else:
            await self._dispatch(message)

    async def on_due(self, incoming: Incoming) -> None:
        await self._dispatch(events_pb2.AcceptedMessage.FromString(incoming.data))

    async def on_cancelled(self, incoming: Incoming) -> None:
        message = events_pb2.AcceptedMessage.FromString(incoming.data)
        jobs = [job for job, _ in _jobs(message, await self._users(message))]
        await self._each(self._announce(j, S.DELIVERY_STATE_CANCELLED, "cancelled by the sender") for j in jobs)

    async def _hold(self, message: events_pb2.AcceptedMessage, payload: bytes, send_at: datetime) -> None:
        jobs = [job for job, _ in _jobs(message, await self._users(message))]
        reason = f"scheduled for {send_at.isoformat(timespec='seconds')}"
        await self._each(self._announce(j, S.DELIVERY_STATE_SCHEDULED, reason) for j in jobs)
        await self._bus.schedule(
            subjects.schedule(message.message_id, message.part), payload, send_at, subjects.SCHEDULE_DUE
        )

    async def on_released(self, incoming: Incoming) -> None:
        """A delivery held for quiet hours: its window ended, send it now."""
        job = events_pb2.DeliveryJob.FromString(incoming.data)
        await self._announce(job, S.DELIVERY_STATE_PENDING, "")
        async with self._publishing:
            await self._bus.publish(subjects.delivery_job(job.channel), job.SerializeToString(), job.delivery_id)

    async def _dispatch(self, message: events_pb2.AcceptedMessage) -> None:
        users = await self._users(message)
        jobs = _jobs(message, users)
        if await self._ledger.decide(message.message_id, Decision.DISPATCHED) is Decision.CANCELLED:
            await self._each(self._announce(j, S.DELIVERY_STATE_CANCELLED, "cancelled by the sender") for j, _ in jobs)
            return
        expired = (expire_at := from_timestamp(message.expire_at)) is not None and expire_at <= now()
        opt_outs = await preferences.load(self._db, set(users))
        await self._each(
            self._route(
                job,
                Checks(
                    expired=expired,
                    unrenderable=unrenderable,
                    opted_out=preferences.suppression(opt_outs, job.user_id, job.category, job.channel),
                    quiet_until=_quiet_until(job, users.get(job.user_id), message),
                ),
            )
            for job, unrenderable in jobs
        )

    async def _route(self, job: events_pb2.DeliveryJob, checks: "Checks") -> None:
        expire_at = from_timestamp(job.expire_at)
        if checks.unrenderable:
            await self._announce(job, S.DELIVERY_STATE_FAILED, checks.unrenderable)
        elif checks.expired:
            await self._announce(job, S.DELIVERY_STATE_EXPIRED, "expire_at passed before routing")
        elif checks.opted_out:
            await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, checks.opted_out)
        elif not job.address:
            reason = f"no {job.channel} address: none in the request"
            reason += f" and none in the directory for user '{job.user_id}'" if job.user_id else ""
            await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, reason)
        elif not await self._dedup.first(job):
            reason = f"duplicate: the same content went to this recipient on {job.channel}"
            reason += f" within the last {self._dedup.window:g}s"
            await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, reason)
        elif capped := await self._caps.admit(job):
            await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, capped)
        elif checks.quiet_until and expire_at and expire_at <= checks.quiet_until:
            until = checks.quiet_until.strftime("%H:%M %Z")
            await self._announce(job, S.DELIVERY_STATE_EXPIRED, f"quiet hours until {until} end after expire_at")
        elif checks.quiet_until:
            until = checks.quiet_until.strftime("%H:%M %Z")
            await self._announce(job, S.DELIVERY_STATE_SCHEDULED, f"quiet hours: held until {until}")
            await self._bus.schedule(
                subjects.held_delivery(job.delivery_id),
                job.SerializeToString(),
                checks.quiet_until,
                subjects.DELIVERY_RELEASED,
            )
        else:
            # PENDING goes first so feedback never sees a delivery's outcome before it exists.
            await self._announce(job, S.DELIVERY_STATE_PENDING, "")
            async with self._publishing:
                await self._bus.publish(subjects.delivery_job(job.channel), job.SerializeToString(), job.delivery_id)

    async def _announce(
        self, job: events_pb2.DeliveryJob, state: common_pb2.DeliveryState.ValueType, reason: str
    ) -> None:
        async with self._publishing:
            await events.publish(self._bus, job, state, reason=reason)

    async def _users(self, message: events_pb2.AcceptedMessage) -> dict[str, tables.User]:
        """The directory entries of the message's recipients that have a user id."""
        return await load_users(self._db, {r.user_id for r in message.recipients if r.user_id})

    @staticmethod
    async def _each(steps: Iterable[Awaitable[None]]) -> None:
        await asyncio.gather(*steps)


@dataclass(frozen=True)
class Checks:
    """What the router found out about one delivery before deciding its fate."""

    expired: bool
    unrenderable: str
    opted_out: str
    # When the recipient's quiet hours end, if the delivery is due inside them.
    quiet_until: datetime | None


def _quiet_until(
    job: events_pb2.DeliveryJob, user: tables.User | None, message: events_pb2.AcceptedMessage
) -> datetime | None:
    """Quiet hours apply to notification and marketing, for recipients whose time zone herald knows."""
    if job.category == S.CATEGORY_CRITICAL or user is None or not user.timezone:
        return None
    if user.quiet_hours is not None:
        quiet = json_format.ParseDict(user.quiet_hours, common_pb2.QuietHours())
    elif message.HasField("quiet_hours"):
        quiet = message.quiet_hours
    else:
        quiet = quiet_hours.DEFAULT
    return quiet_hours.release_time(quiet, user.timezone, now())


def _jobs(
    message: events_pb2.AcceptedMessage, users: dict[str, tables.User]
) -> list[tuple[events_pb2.DeliveryJob, str]]:
    return [
        _job(message, recipient, channel, position * len(message.channels) + j, users.get(recipient.user_id))
        for position, recipient in enumerate(message.recipients, start=message.recipient_offset)
        for j, channel in enumerate(message.channels)
    ]


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
    locale = recipient.locale or (user.locale if user else "")
    content = templating.pick(list(message.template.contents), channel, locale)
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
    if content is None:
        return job, f"template has no {channel} content for locale '{locale}' and no default"
    try:
        rendered = templating.render_content(content, values)
    except templating.TemplateError as e:
        return job, f"cannot render the template: {e}"
    job.subject, job.body, job.html_body, job.locale = (
        rendered.subject,
        rendered.body,
        rendered.html_body,
        content.locale,
    )
    job.data.update(rendered.data)
    return job, ""
