"""send_at holds a message in JetStream until it is due; CancelMessage withdraws what is not dispatched yet."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.webhook_sink import WebhookSink

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

S = common_pb2


async def _scheduled(herald: Herald, sink: WebhookSink, ahead: float) -> tuple[Metadata, str, str, datetime]:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    path = f"/scheduled/{uuid.uuid4().hex[:8]}"
    send_at = datetime.now(UTC) + timedelta(seconds=ahead)
    request = msg.SendRequest(
        template_id=template,
        recipients=[msg.Recipient(addresses={"webhook": sink.url(path)}), msg.Recipient(user_id="nobody-home")],
    )
    request.send_at.FromDatetime(send_at)
    return app, await herald.send(app, request), path, send_at


def _states(message: status_service_pb2.Message) -> set[int]:
    return {d.state for d in message.deliveries}


async def test_scheduled_message_is_held_then_delivered_on_time(herald: Herald, sink: WebhookSink) -> None:
    app, message_id, path, send_at = await _scheduled(herald, sink, 4)
    [hit] = await sink.wait_for(path, timeout=15)
    arrived = datetime.now(UTC)
    assert arrived >= send_at - timedelta(milliseconds=50), "delivered before its send_at"
    assert arrived <= send_at + timedelta(seconds=3)
    done = await herald.wait_message(app, message_id, lambda m: all_final(m, 2) and len(m.deliveries) == 2)
    assert sorted(d.state for d in done.deliveries) == [S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_SUPPRESSED]
    # Held first: each delivery's history starts SCHEDULED (read at the end, however late status is recorded).
    for delivery in done.deliveries:
        assert delivery.history[0].state == S.DELIVERY_STATE_SCHEDULED
        assert delivery.history[0].reason.startswith("scheduled for ")
    assert hit.signature_ok


async def test_scheduled_and_cancelled_is_never_delivered_and_shows_cancelled(
    herald: Herald, sink: WebhookSink
) -> None:
    app, message_id, path, send_at = await _scheduled(herald, sink, 12)
    await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 2)
    reply = await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)
    assert reply.message_id == message_id
    cancelled = await herald.wait_message(
        app, message_id, lambda m: _states(m) == {S.DELIVERY_STATE_CANCELLED} and len(m.deliveries) == 2
    )
    assert all(d.reason == "cancelled by the sender" for d in cancelled.deliveries)
    again = await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)
    assert again.message_id == message_id, "cancelling twice is harmless"
    assert datetime.now(UTC) < send_at, "cancelled before it fell due, or the wait below proves nothing"

    await asyncio.sleep(max(0.0, (send_at - datetime.now(UTC)).total_seconds()) + 3)
    assert sink.for_path(path) == []
    after = await herald.wait_message(app, message_id, lambda m: True)
    assert _states(after) == {S.DELIVERY_STATE_CANCELLED}


async def test_cancel_after_dispatch_is_a_failed_precondition(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    request = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url("/dispatched")})]
    )
    message_id = await herald.send(app, request)
    await herald.wait_message(app, message_id, all_final)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_racing_dispatch_has_one_consistent_outcome(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    for _ in range(5):
        path = f"/race/{uuid.uuid4().hex[:8]}"
        request = msg.SendRequest(
            template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})]
        )
        message_id = await herald.send(app, request)
        try:
            await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as e:
            code = e.code()
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)
        won = code == grpc.StatusCode.OK
        final = await herald.wait_message(app, message_id, all_final)
        await asyncio.sleep(0.5)
        # Either outcome is right; what matters is that each message has exactly one.
        if won:
            assert _states(final) == {S.DELIVERY_STATE_CANCELLED} and sink.for_path(path) == []
        else:
            assert _states(final) == {S.DELIVERY_STATE_SENT} and len(sink.for_path(path)) == 1


async def test_only_the_owner_may_cancel(herald: Herald, sink: WebhookSink) -> None:
    app, message_id, _, _ = await _scheduled(herald, sink, 60)
    _, other = await herald.create_app()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=other)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)


async def test_send_at_more_than_a_year_ahead_is_refused(herald: Herald) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    request = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": "https://x.example/"})]
    )
    request.send_at.FromSeconds(int(time.time()) + 400 * 86400)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.messages.Send(request, metadata=app)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_id_not_issued_to_the_app_is_not_found(herald: Herald, sink: WebhookSink) -> None:
    """A message without an idempotency key has no row: its id alone says whose it is, and a forged one fails."""
    app, message_id, path, _ = await _scheduled(herald, sink, 30)
    last = message_id[-1]
    forged = [
        message_id[:-1] + ("0" if last != "0" else "1"),
        "msg_x",
        message_id[:-8] + message_id[4:12],
        message_id[:-1] + "é",  # the right length, not ASCII
    ]
    for made_up in forged:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=made_up), metadata=app)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, made_up
    await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)
    assert sink.for_path(path) == []
