"""Feedback folds status events into a delivery's state: out of order and repeated events change nothing wrong;
an event or accepted message that cannot be recorded is dropped and counted, holding up nothing behind it.
In one process: feedback's consumers on the in-memory bus, read through StatusService (tests/feedback/stage.py)."""

import uuid
from typing import Any

from herald.v1 import common_pb2, events_pb2
from prometheus_client import REGISTRY

from tests.feedback.stage import feedback_stage
from tests.helpers.status_events import ACCEPTED_SUBJECT, accepted, status_event

S = common_pb2


async def test_late_pending_and_repeated_events_leave_the_delivery_sent(database_url: str) -> None:
    async with feedback_stage(database_url) as feedback:
        app_id, app = await feedback.app()
        message_id = f"msg_{uuid.uuid4().hex}"
        fields: dict[str, Any] = {"message_id": message_id, "app_id": app_id, "channel": "webhook"}
        sent = status_event(f"{message_id}.0", S.DELIVERY_STATE_SENT, **fields)
        pending = status_event(f"{message_id}.0", S.DELIVERY_STATE_PENDING, attempt=0, **fields)
        # The outcome first, twice, then the step before it.
        await feedback.publish(accepted(message_id, app_id), sent, sent, pending)

        message = await feedback.wait_message(
            app, message_id, lambda m: len(m.deliveries) == 1 and len(m.deliveries[0].history) == 2
        )
        [delivery] = message.deliveries
        assert delivery.state == S.DELIVERY_STATE_SENT
        assert delivery.attempts == 1
        assert sorted(h.state for h in delivery.history) == [S.DELIVERY_STATE_PENDING, S.DELIVERY_STATE_SENT]


async def test_an_event_that_cannot_be_recorded_blocks_none_of_the_others(database_url: str) -> None:
    async with feedback_stage(database_url) as feedback:
        app_id, app = await feedback.app()
        message_id = f"msg_{uuid.uuid4().hex}"
        good = status_event(f"{message_id}.0", S.DELIVERY_STATE_SENT, message_id=message_id, app_id=app_id)
        impossible_time = status_event(f"{message_id}.1", S.DELIVERY_STATE_SENT)
        impossible_time.occur_time.nanos = -1
        rejected_before = _rejected("events")
        # The impossible event travels grouped with the good one, as the router and adapters publish them.
        together = events_pb2.DeliveryEvents(events=[impossible_time, good]).SerializeToString()
        await feedback.publish(accepted(message_id, app_id), b"\xff not a protobuf", together)

        message = await feedback.wait_message(app, message_id, lambda m: len(m.deliveries) == 1)
        assert message.deliveries[0].state == S.DELIVERY_STATE_SENT
        assert _rejected("events") == rejected_before + 2


async def test_an_accepted_message_that_cannot_be_recorded_holds_up_no_message_fetched_with_it(
    database_url: str,
) -> None:
    async with feedback_stage(database_url, started=False) as feedback:
        app_id, app = await feedback.app()
        rejected_before = _rejected("messages")
        # Both wait in the stream while feedback is down (as after a deploy), so its first fetch takes them together.
        message_id = f"msg_{uuid.uuid4().hex}"
        await feedback.publish(b"\xff not a protobuf", raw_to=ACCEPTED_SUBJECT)
        await feedback.publish(accepted(message_id, app_id))
        await feedback.start()

        await feedback.wait_message(app, message_id, lambda m: m.message_id == message_id)
        assert _rejected("messages") == rejected_before + 1


def _rejected(what: str) -> float:
    return REGISTRY.get_sample_value(f"herald_feedback_rejected_{what}_total") or 0.0
