"""Status events and accepted messages as herald's own services publish them, at chosen times, put straight onto
JetStream without de-duplication ids - as a redelivery or a misbehaving producer would - to test what feedback
makes of them."""

import asyncio
from datetime import datetime
from typing import Any

import nats
from herald.v1 import admin_service_pb2, common_pb2, events_pb2

from devmesh.mesh import Mesh
from herald.internal.v1 import work_pb2
from herald.libs.events import state_name
from herald.libs.timeutil import now, to_timestamp

# Feedback reads every subject under herald.event.delivery.> and herald.message.accepted.>.
EVENT_SUBJECT = "herald.event.delivery.test"
ACCEPTED_SUBJECT = "herald.message.accepted.test"
# Publishes awaiting their acks at once.
IN_FLIGHT = 256


def status_event(
    delivery_id: str,
    state: common_pb2.DeliveryState.ValueType,
    at: datetime | None = None,
    *,
    attempt: int = 1,
    **fields: Any,
) -> events_pb2.DeliveryEvent:
    """With the event id libs.events gives it (delivery, state, attempt)."""
    return events_pb2.DeliveryEvent(
        event_id=f"{delivery_id}.{state_name(state)}.{attempt}",
        delivery_id=delivery_id,
        state=state,
        attempt=attempt,
        occur_time=to_timestamp(at or now()),
        **fields,
    )


def accepted(message_id: str, app_id: str, at: datetime | None = None) -> work_pb2.AcceptedMessage:
    template = admin_service_pb2.Template(template_id="t", version=1, category=common_pb2.CATEGORY_NOTIFICATION)
    return work_pb2.AcceptedMessage(
        message_id=message_id, app_id=app_id, template=template, create_time=to_timestamp(at or now())
    )


async def publish(
    mesh: Mesh,
    *messages: events_pb2.DeliveryEvent | work_pb2.AcceptedMessage | bytes,
    raw_to: str = EVENT_SUBJECT,
) -> None:
    """In this order; raw bytes go to `raw_to`: where status events go, or ACCEPTED_SUBJECT. Up to IN_FLIGHT
    publishes await their acks together (written in order on the one connection), so a test's campaign of tens of
    thousands of events takes seconds, not minutes."""
    nc = await nats.connect(mesh.nats_url)
    try:
        js = nc.jetstream()
        for start in range(0, len(messages), IN_FLIGHT):
            await asyncio.gather(*(js.publish(*_addressed(m, raw_to)) for m in messages[start : start + IN_FLIGHT]))
    finally:
        await nc.close()


def _addressed(message: events_pb2.DeliveryEvent | work_pb2.AcceptedMessage | bytes, raw_to: str) -> tuple[str, bytes]:
    if isinstance(message, bytes):
        return raw_to, message
    if isinstance(message, work_pb2.AcceptedMessage):
        return ACCEPTED_SUBJECT, work_pb2.AcceptedBatch(messages=[message]).SerializeToString()
    return EVENT_SUBJECT, events_pb2.DeliveryEvents(events=[message]).SerializeToString()
