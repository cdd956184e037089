"""Who gets a delivery and at which address: the directory, the request's own addresses, and suppression."""

import uuid

from herald.v1 import common_pb2, directory_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:8]}"


async def test_recipient_resolved_from_directory(herald: Herald, sink: WebhookSink) -> None:
    path, user_id = _path(), f"user-{uuid.uuid4().hex[:6]}"
    await herald.directory.UpsertUser(
        directory_service_pb2.UpsertUserRequest(
            user=directory_service_pb2.User(
                user_id=user_id,
                addresses={"webhook": sink.url(path)},
                timezone="Asia/Shanghai",
                quiet_hours=common_pb2.QuietHours(disabled=True),
            )
        ),
        metadata=herald.admin,
    )
    _, _, message = await herald.send_and_wait(msg.Recipient(user_id=user_id))
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
    await herald.send_and_wait(msg.Recipient(user_id=user_id, addresses={"webhook": sink.url(request_path)}))
    assert len(sink.for_path(request_path)) == 1
    assert sink.for_path(directory_path) == []


async def test_no_address_anywhere_is_suppressed_with_reason(herald: Herald) -> None:
    _, _, message = await herald.send_and_wait(msg.Recipient(user_id=f"nobody-{uuid.uuid4().hex[:6]}"))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_SUPPRESSED
    assert "no webhook address" in delivery.reason
    assert delivery.attempts == 0
