"""From an accepted message to delivery jobs: one chain per recipient and channel, addressed and rendered.

A channel outside the template's fallback chain is a chain of one. A chain's
first job carries the rest in `fallback`, so whoever finds the channel unusable
(the router) or sees it fail for good (the adapters) can go on to the next
without the message. Delivery ids are fixed by the recipient's position and
the channel's (libs.ids.delivery_id), so every replay of a message derives the
same ids.
"""

from herald.v1 import events_pb2, message_service_pb2

from libs import channels, ids, templating
from services.router import tables

# A step of a chain and why it cannot be rendered ("" when it can).
Step = tuple[events_pb2.DeliveryJob, str]


def chains(message: events_pb2.AcceptedMessage, users: dict[str, tables.User]) -> list[list[Step]]:
    chain = channels.fallback_chain(message.template.fallback_channels, message.channels)
    found: list[list[Step]] = []
    count = len(message.channels)
    for position, recipient in enumerate(message.recipients, start=message.recipient_offset):
        user = users.get(recipient.user_id)
        steps = {
            channel: _job(message, recipient, channel, ids.delivery_id(message.message_id, position, j, count), user)
            for j, channel in enumerate(message.channels)
        }
        found += [[steps[c]] for c in message.channels if c not in chain]
        if chain:
            found.append([steps[c] for c in chain])
    return found


def link(steps: list[events_pb2.DeliveryJob]) -> events_pb2.DeliveryJob:
    """The first job, carrying the others as its fallback."""
    first = steps[0]
    del first.fallback[:]
    first.fallback.extend(steps[1:])
    return first


def next_in_chain(job: events_pb2.DeliveryJob) -> events_pb2.DeliveryJob:
    """The fallback to try after `job`, carrying the rest of the chain."""
    following = [events_pb2.DeliveryJob() for _ in job.fallback]
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
    message: events_pb2.AcceptedMessage,
    recipient: message_service_pb2.Recipient,
    channel: str,
    delivery_id: str,
    user: tables.User | None,
) -> Step:
    """intake render-checked the same template and variables, so a failure here means a bug, reported on
    the delivery rather than retried forever."""
    locale = recipient.locale or (user.locale if user else "")
    job = events_pb2.DeliveryJob(
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
    content = templating.pick(list(message.template.contents), channel, locale)
    if content is None:
        return job, f"template has no {channel} content for locale '{locale}' and no default"
    try:
        rendered = templating.render_content(content, {**message.variables, **recipient.variables})
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
