"""Delivery status events: one per state change, on herald.event.delivery.<state>.

Events published together (the same turn of the event loop, state and trace:
a batch's) travel as one DeliveryEvents message (Bus.publish_grouped). The
event id is derived from the delivery, the state and the attempt, so a step
that runs again after a redelivery publishes the same event id, and feedback
(primary key) drops the repeat.
"""

import functools
from collections.abc import Awaitable
from datetime import datetime

from herald.v1 import common_pb2, events_pb2

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus import Publisher
from herald.libs.bus.grouping import join_groups
from herald.libs.timeutil import now, to_timestamp


def content(job: work_pb2.DeliveryJob) -> str:
    """What the recipient reads, as search finds it."""
    return "\n".join(part for part in (job.subject, job.body) if part)


@functools.cache
def state_name(state: common_pb2.DeliveryState.ValueType) -> str:
    """The state as subjects, event ids and metric labels spell it (DELIVERY_STATE_SENT: sent), worked out once per
    state rather than per event."""
    return common_pb2.DeliveryState.Name(state).removeprefix("DELIVERY_STATE_").lower()


def event(
    job: work_pb2.DeliveryJob,
    state: common_pb2.DeliveryState.ValueType,
    *,
    event_id: str = "",
    attempt: int = 0,
    reason: str = "",
    provider: str = "",
    provider_message_id: str = "",
    content: str = "",
    occur_time: datetime | None = None,
    reason_code: str = "",
    cost_micros: int = 0,
    currency_code: str = "",
) -> events_pb2.DeliveryEvent:
    """The job's delivery reaching `state`. The id is "<delivery>.<state>.<attempt>" unless `event_id` says
    otherwise; `occur_time` is when it happened, if not now (an inbox item is SENT when it was stored, which may
    be after a device already got it)."""
    return events_pb2.DeliveryEvent(
        event_id=event_id or f"{job.delivery_id}.{state_name(state)}.{attempt}",
        delivery_id=job.delivery_id,
        message_id=job.message_id,
        app_id=job.app_id,
        template_id=job.template_id,
        user_id=job.user_id,
        channel=job.channel,
        state=state,
        attempt=attempt,
        reason=reason,
        provider=provider,
        provider_message_id=provider_message_id,
        occur_time=to_timestamp(occur_time or now()),
        content=content,
        reason_code=reason_code,
        cost_micros=cost_micros,
        currency_code=currency_code,
        category=job.category,
    )


def publish(bus: Publisher, *published: events_pb2.DeliveryEvent) -> Awaitable[None]:
    """Publish events, grouped with the others of this turn: they join their groups now (one call per state, however
    many events: a batch's cost the bus a few joins, not one each); await the result for them to be durable."""
    return join_groups(
        bus, ((subjects.delivery_event(state_name(e.state)), e.SerializeToString(), e.event_id) for e in published)
    )
