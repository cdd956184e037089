"""Feedback folds status events into a delivery's state: out of order and repeated events change nothing wrong;
an event or accepted message that cannot be recorded is dropped and counted, holding up nothing behind it."""

import uuid
from pathlib import Path
from typing import Any

from herald.v1 import common_pb2, events_pb2
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from tests.conftest import running_mesh
from tests.helpers.client import Herald
from tests.helpers.databases import default_backend
from tests.helpers.metrics import scrape, total
from tests.helpers.status_events import ACCEPTED_SUBJECT, accepted, publish, status_event
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def test_late_pending_and_repeated_events_leave_the_delivery_sent(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    app_id, app = await herald.create_app()
    message_id = f"msg_{uuid.uuid4().hex}"
    fields: dict[str, Any] = {"message_id": message_id, "app_id": app_id, "channel": "webhook"}
    sent = status_event(f"{message_id}.0", S.DELIVERY_STATE_SENT, **fields)
    pending = status_event(f"{message_id}.0", S.DELIVERY_STATE_PENDING, attempt=0, **fields)
    # The outcome first, twice, then the step before it.
    await publish(mesh, accepted(message_id, app_id), sent, sent, pending)

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
    good = status_event(f"{message_id}.0", S.DELIVERY_STATE_SENT, message_id=message_id, app_id=app_id)
    impossible_time = status_event(f"{message_id}.1", S.DELIVERY_STATE_SENT)
    impossible_time.occur_time.nanos = -1
    rejected_before = await _rejected(mesh, "events")
    # The impossible event travels grouped with the good one, as the router and adapters publish them.
    together = events_pb2.DeliveryEvents(events=[impossible_time, good]).SerializeToString()
    await publish(mesh, accepted(message_id, app_id), b"\xff not a protobuf", together)

    message = await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 1)
    assert message.deliveries[0].state == S.DELIVERY_STATE_SENT
    assert await _rejected(mesh, "events") == rejected_before + 2


async def test_an_accepted_message_that_cannot_be_recorded_holds_up_no_send_fetched_with_it(
    tmp_path: Path, sink: WebhookSink
) -> None:
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": "{}"})
        feedback = mesh.binaries["feedback"]
        # Both wait in the stream while feedback is down (as after a deploy), so its first fetch takes them together.
        await feedback.stop()
        await publish(mesh, b"\xff not a protobuf", raw_to=ACCEPTED_SUBJECT)
        recipient = msg.Recipient(addresses={"webhook": sink.url(f"/behind-poison/{uuid.uuid4().hex[:8]}")})
        message_id = await herald.send(app, msg.SendRequest(template_id=template, recipients=[recipient]))
        feedback.start()
        await feedback.wait_healthy()

        await herald.wait_message(app, message_id, lambda m: m.message_id == message_id)
        assert await _rejected(mesh, "messages") == 1


async def _rejected(mesh: Mesh, what: str) -> float:
    return total(await scrape(mesh.metrics_url("feedback")), f"herald_feedback_rejected_{what}_total")
