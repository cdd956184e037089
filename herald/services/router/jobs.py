"""From an accepted message to delivery jobs: one chain per recipient and channel, addressed and rendered.

A channel outside the template's fallback chain is a chain of one. A chain's
first job carries the rest in `fallback`, so whoever finds the channel unusable
(the router) or sees it fail for good (the adapters) can go on to the next
without the message. Delivery ids are fixed by the recipient's position and
the channel's (libs.ids.delivery_id), so every replay of a message derives the
same ids. A template's escalation channels are not sent at once: each becomes a
later step (Escalation) naming the deliveries before it; a user's preferred
channel, when the sender names none, replaces the others; an inbox job carries
the push that wakes the user's app (DeliveryJob.wake).
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from herald.v1 import admin_service_pb2, common_pb2, message_service_pb2

from herald.internal.v1 import work_pb2
from herald.libs import channels, ids, templating
from herald.services.router import tables

# A step of a chain and why it cannot be rendered ("" when it can).
Step = tuple[work_pb2.DeliveryJob, str]
# The channels an offline push may wake a user's app on, in order of preference.
PUSH_CHANNELS = ("apns", "fcm")
# Templates whose inbox items wake the app unless they say otherwise.
WAKING_CATEGORIES = frozenset({common_pb2.CATEGORY_CRITICAL, common_pb2.CATEGORY_NOTIFICATION})


@dataclass(frozen=True)
class Chain:
    """One recipient's chain of steps, and the variables it was rendered with (the message's, overridden by the
    recipient's)."""

    steps: list[Step]
    values: dict[str, str]


@dataclass(frozen=True)
class Escalation:
    """A later step of a template's escalation, due `delay` after the message was dispatched; its job names the
    recipient's earlier deliveries that, read or delivered, stop it (`stop_on`)."""

    step: Step
    delay: timedelta


@dataclass(frozen=True)
class Plan:
    chains: list[Chain] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)


def escalation_steps(template: admin_service_pb2.Template, chosen: Sequence[str]) -> dict[str, timedelta]:
    """The template's escalation channels among those chosen, by channel, with their delays; none when the
    chosen are all escalation channels (a sender who names only those sends them now)."""
    later = {s.channel: s.delay.ToTimedelta() for s in template.escalation if s.channel in chosen}
    return later if set(chosen) - later.keys() else {}


def plan(message: work_pb2.AcceptedMessage, users: dict[str, tables.User]) -> Plan:
    chain = channels.fallback_chain(message.template.fallback_channels, message.channels)
    later = escalation_steps(message.template, message.channels)
    found = Plan()
    count = len(message.channels)
    for position, recipient in enumerate(message.recipients, start=message.recipient_offset):
        user = users.get(recipient.user_id)
        values = {**message.variables, **recipient.variables}
        steps = {
            channel: _job(
                message, recipient, values, channel, ids.delivery_id(message.message_id, position, j, count), user
            )
            for j, channel in enumerate(message.channels)
        }
        preferred = user.preferred_channel if user and not message.channels_named else ""
        singles, own_chain = at_once(message.channels, chain, later.keys(), preferred)
        first = [[steps[c]] for c in singles]
        if own_chain:
            first.append([steps[c] for c in own_chain])
        found.chains.extend(Chain(c, values) for c in first)
        stop_on = [job.delivery_id for c in first for job, _ in c]
        for channel, delay in later.items():
            job, unrenderable = steps[channel]
            job.stop_on.extend(stop_on)
            stop_on.append(job.delivery_id)
            found.escalations.append(Escalation((job, unrenderable), delay))
    return found


def at_once(
    channels: Sequence[str], chain: Sequence[str], later: Collection[str], preferred: str
) -> tuple[list[str], list[str]]:
    """What goes out at once to a recipient: the channels sent alone, and the fallback chain. A preferred channel
    the message has (and does not hold back for escalation) is used instead of the others, ahead of the rest of
    the chain."""
    if preferred in channels and preferred not in later:
        return [], [preferred, *(c for c in chain if c != preferred)]
    return [c for c in channels if c not in chain and c not in later], list(chain)


def link(steps: list[work_pb2.DeliveryJob]) -> work_pb2.DeliveryJob:
    """The first job, carrying the others as its fallback."""
    first = steps[0]
    del first.fallback[:]
    first.fallback.extend(steps[1:])
    return first


def next_in_chain(job: work_pb2.DeliveryJob) -> work_pb2.DeliveryJob:
    """The fallback to try after `job`, carrying the rest of the chain."""
    following = [work_pb2.DeliveryJob() for _ in job.fallback]
    for copy, original in zip(following, job.fallback, strict=True):
        copy.CopyFrom(original)
    return link(following)


def address(addresses: dict[str, str] | None, user_id: str, channel: str, user: tables.User | None) -> str:
    """The request's address wins over the directory's; the in-app inbox is addressed by the user id."""
    found = (addresses or {}).get(channel) or (user.address(channel) if user else "")
    if not found and channel in channels.ADDRESSED_BY_USER_ID:
        return user_id
    return found


def _job(
    message: work_pb2.AcceptedMessage,
    recipient: message_service_pb2.Recipient,
    values: dict[str, str],
    channel: str,
    delivery_id: str,
    user: tables.User | None,
) -> Step:
    """intake render-checked the same template and variables, so a failure here means a bug, reported on
    the delivery rather than retried forever."""
    job = work_pb2.DeliveryJob(
        delivery_id=delivery_id,
        message_id=message.message_id,
        app_id=message.app_id,
        template_id=message.template.template_id,
        category=message.template.category,
        user_id=recipient.user_id,
        channel=channel,
        address=address(dict(recipient.addresses), recipient.user_id, channel, user),
    )
    if message.HasField("expire_at"):  # an unset one must stay unset: APNs and FCM read its presence
        job.expire_at.CopyFrom(message.expire_at)
    if message.HasField("quiet_hours"):
        job.quiet_hours.CopyFrom(message.quiet_hours)
    locale = recipient.locale or (user.locale if user else "")
    given = templating.send_values(message.template, values)
    if unrenderable := render(job, message.template, given, locale):
        return job, unrenderable
    if channel == "inbox" and wakes(message.template) and user is not None:
        _add_wake(job, user)
    if channel == "email":
        job.track_opens, job.track_clicks = message.template.track_opens, message.template.track_clicks
        job.content_retention_days = message.content_retention_days
    return job, ""


def render(
    job: work_pb2.DeliveryJob, template: admin_service_pb2.Template, values: Mapping[str, Any], locale: str
) -> str:
    """Render the job's content in `locale` (else its language, else the default); why it cannot be, or ""."""
    content = templating.pick(list(template.contents), job.channel, locale)
    if content is None:
        return f"template has no {job.channel} content for locale '{locale}' and no default"
    try:
        rendered = templating.render_content(content, values)
    except templating.TemplateError as e:
        return f"cannot render the template: {e}"
    job.subject, job.body, job.html_body, job.locale = (
        rendered.subject,
        rendered.body,
        rendered.html_body,
        content.locale,
    )
    job.data.clear()
    job.data.update(rendered.data)
    del job.click_origins[:]
    if template.track_clicks and content.html_body:
        job.click_origins.extend(templating.link_origins(content.html_body))
    return ""


def wakes(template: admin_service_pb2.Template) -> bool:
    """Whether the template's inbox items wake an app nobody is watching (Template.offline_push)."""
    if template.offline_push == admin_service_pb2.OFFLINE_PUSH_UNSPECIFIED:
        return template.category in WAKING_CATEGORIES
    return template.offline_push == admin_service_pb2.OFFLINE_PUSH_ENABLED


def _add_wake(job: work_pb2.DeliveryJob, user: tables.User) -> None:
    """The push on the user's first push channel with an address, saying what the inbox item says."""
    for channel in PUSH_CHANNELS:
        if found := user.address(channel):
            job.wake.CopyFrom(
                work_pb2.DeliveryJob(
                    delivery_id=f"{job.delivery_id}.wake",
                    message_id=job.message_id,
                    app_id=job.app_id,
                    template_id=job.template_id,
                    category=job.category,
                    user_id=job.user_id,
                    channel=channel,
                    address=found,
                    subject=job.subject,
                    body=job.body,
                    data={"herald_inbox": "1"},
                    locale=job.locale,
                )
            )
            if job.HasField("quiet_hours"):
                job.wake.quiet_hours.CopyFrom(job.quiet_hours)
            return
