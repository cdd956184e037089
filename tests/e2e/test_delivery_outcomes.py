"""What a support person sees in GetMessage for each way a delivery can end."""

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from herald.v1 import common_pb2, directory_service_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:8]}"


async def _send_one(
    herald: Herald, recipient: msg.Recipient, channels: tuple[str, ...] = ("webhook",)
) -> tuple[Metadata, str, status_service_pb2.Message]:
    _, app = await herald.create_app(channels)
    template = await herald.create_template({c: "{}" for c in channels})
    message_id = await herald.send(app, msg.SendRequest(template_id=template, recipients=[recipient]))
    message = await herald.wait_message(app, message_id, all_final)
    return app, message_id, message


async def test_recipient_resolved_from_directory(herald: Herald, sink: WebhookSink) -> None:
    path, user_id = _path(), f"user-{uuid.uuid4().hex[:6]}"
    await herald.directory.UpsertUser(
        directory_service_pb2.UpsertUserRequest(
            user=directory_service_pb2.User(
                user_id=user_id, addresses={"webhook": sink.url(path)}, timezone="Asia/Shanghai"
            )
        ),
        metadata=herald.admin,
    )
    _, _, message = await _send_one(herald, msg.Recipient(user_id=user_id))
    assert message.deliveries[0].state == S.DELIVERY_STATE_SENT
    assert len(sink.for_path(path)) == 1


async def test_address_in_request_wins_over_directory(herald: Herald, sink: WebhookSink) -> None:
    directory_path, request_path, user_id = _path(), _path(), f"user-{uuid.uuid4().hex[:6]}"
    await herald.directory.UpsertUser(
        directory_service_pb2.UpsertUserRequest(
            user=directory_service_pb2.User(user_id=user_id, addresses={"webhook": sink.url(directory_path)})
        ),
        metadata=herald.admin,
    )
    await _send_one(herald, msg.Recipient(user_id=user_id, addresses={"webhook": sink.url(request_path)}))
    assert len(sink.for_path(request_path)) == 1
    assert sink.for_path(directory_path) == []


async def test_no_address_anywhere_is_suppressed_with_reason(herald: Herald) -> None:
    _, _, message = await _send_one(herald, msg.Recipient(user_id=f"nobody-{uuid.uuid4().hex[:6]}"))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_SUPPRESSED
    assert "no webhook address" in delivery.reason
    assert delivery.attempts == 0


async def test_retryable_error_is_retried_then_sent(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    sink.statuses.extend([503])
    _, _, message = await _send_one(herald, msg.Recipient(addresses={"webhook": sink.url(path)}))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_SENT
    assert delivery.attempts == 2
    assert len(sink.for_path(path)) == 2
    retry = [h for h in delivery.history if h.state == S.DELIVERY_STATE_PENDING and h.attempt == 1]
    assert retry and "HTTP 503" in retry[0].reason and "retrying" in retry[0].reason


async def test_permanent_error_fails_with_the_endpoints_answer(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    sink.statuses.extend([404])
    _, _, message = await _send_one(herald, msg.Recipient(addresses={"webhook": sink.url(path)}))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_FAILED
    assert delivery.reason == "webhook endpoint answered HTTP 404"
    assert delivery.attempts == 1 and delivery.provider == "webhook"


async def test_webhook_to_a_private_address_is_refused(herald: Herald, sink: WebhookSink) -> None:
    # The mesh allows only the host "127.0.0.1"; "localhost" is the same machine under another name.
    url = sink.url(_path()).replace("127.0.0.1", "localhost")
    _, _, message = await _send_one(herald, msg.Recipient(addresses={"webhook": url}))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_FAILED
    assert "non-public address" in delivery.reason and "HERALD_WEBHOOK_ALLOWED_HOSTS" in delivery.reason


async def test_channel_without_an_adapter_fails_visibly(herald: Herald) -> None:
    _, _, message = await _send_one(herald, msg.Recipient(addresses={"email": "ann@example.com"}), ("email",))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_FAILED
    assert "not available" in delivery.reason


async def test_message_past_expire_at_is_not_retried(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    sink.statuses.append((503, {"Retry-After": "3"}))
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])
    request.expire_at.FromDatetime(datetime.now(UTC) + timedelta(seconds=1.5))
    message_id = await herald.send(app, request)
    message = await herald.wait_message(app, message_id, all_final)
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_EXPIRED
    assert delivery.reason == "expire_at passed"
    assert len(sink.for_path(path)) == 1, "the retry after expire_at must not reach the endpoint"


async def test_another_apps_message_is_not_found(herald: Herald, sink: WebhookSink) -> None:
    _, message_id, _ = await _send_one(herald, msg.Recipient(addresses={"webhook": sink.url(_path())}))
    _, other_app = await herald.create_app()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.status.GetMessage(status_service_pb2.GetMessageRequest(message_id=message_id), metadata=other_app)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
