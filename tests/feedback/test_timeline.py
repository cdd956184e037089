"""Feedback folds status events into a delivery's state: out of order and repeated events change nothing wrong."""

import uuid

import nats
from herald.v1 import admin_service_pb2, common_pb2, events_pb2

from libs.localmesh import Mesh
from libs.timeutil import now, to_timestamp
from tests.helpers.client import Herald
from tests.helpers.metrics import scrape, total

S = common_pb2


async def test_late_pending_and_repeated_events_leave_the_delivery_sent(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    app_id, app = await herald.create_app()
    message_id = f"msg_{uuid.uuid4().hex}"
    delivery_id = f"{message_id}.0"
    accepted = events_pb2.AcceptedMessage(
        message_id=message_id,
        app_id=app_id,
        template=admin_service_pb2.Template(template_id="t", version=1, category=S.CATEGORY_NOTIFICATION),
        channels=["webhook"],
        create_time=to_timestamp(now()),
    )

    def event(state: common_pb2.DeliveryState.ValueType, attempt: int) -> events_pb2.DeliveryEvent:
        name = S.DeliveryState.Name(state).removeprefix("DELIVERY_STATE_").lower()
        return events_pb2.DeliveryEvent(
            event_id=f"{delivery_id}.{name}.{attempt}",
            delivery_id=delivery_id,
            message_id=message_id,
            app_id=app_id,
            channel="webhook",
            state=state,
            attempt=attempt,
            occur_time=to_timestamp(now()),
        )

    sent, pending = event(S.DELIVERY_STATE_SENT, 1), event(S.DELIVERY_STATE_PENDING, 0)
    nc = await nats.connect(mesh.nats_url)
    js = nc.jetstream()
    await js.publish("herald.message.accepted.notification", accepted.SerializeToString())
    for e in (sent, sent, pending):  # the outcome first, twice, then the step before it
        await js.publish("herald.event.delivery.x", e.SerializeToString())
    await nc.close()

    message = await herald.wait_message(
        app, message_id, lambda m: len(m.deliveries) == 1 and len(m.deliveries[0].history) == 2
    )
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_SENT
    assert delivery.attempts == 1
    assert sorted(h.state for h in delivery.history) == [S.DELIVERY_STATE_PENDING, S.DELIVERY_STATE_SENT]


async def test_an_event_that_cannot_be_recorded_blocks_none_of_the_others(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    app_id, app = await herald.create_app()
    message_id = f"msg_{uuid.uuid4().hex}"
    accepted = events_pb2.AcceptedMessage(
        message_id=message_id,
        app_id=app_id,
        template=admin_service_pb2.Template(template_id="t", version=1, category=S.CATEGORY_NOTIFICATION),
        create_time=to_timestamp(now()),
    )
    good = events_pb2.DeliveryEvent(
        event_id=f"{message_id}.0.sent.1",
        delivery_id=f"{message_id}.0",
        message_id=message_id,
        app_id=app_id,
        channel="webhook",
        state=S.DELIVERY_STATE_SENT,
        attempt=1,
        occur_time=to_timestamp(now()),
    )
    impossible_time = events_pb2.DeliveryEvent(event_id=f"{message_id}.1.sent.1", delivery_id=f"{message_id}.1")
    impossible_time.occur_time.nanos = -1
    rejected_before = await _rejected(mesh)
    nc = await nats.connect(mesh.nats_url)
    js = nc.jetstream()
    await js.publish("herald.message.accepted.notification", accepted.SerializeToString())
    for payload in (b"\xff not a protobuf", impossible_time.SerializeToString(), good.SerializeToString()):
        await js.publish("herald.event.delivery.x", payload)
    await nc.close()

    message = await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 1)
    assert message.deliveries[0].state == S.DELIVERY_STATE_SENT
    assert await _rejected(mesh) == rejected_before + 2


async def _rejected(mesh: Mesh) -> float:
    return total(await scrape(mesh.metrics_url("feedback")), "herald_feedback_rejected_events_total")
