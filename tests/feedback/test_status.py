"""StatusService: an app sees only its own messages."""

import uuid

import grpc
import pytest
from herald.v1 import message_service_pb2 as msg
from herald.v1 import status_service_pb2

from tests.helpers.client import Herald
from tests.helpers.webhook_sink import WebhookSink


async def test_another_apps_message_is_not_found(herald: Herald, sink: WebhookSink) -> None:
    _, message_id, _ = await herald.send_and_wait(
        msg.Recipient(addresses={"webhook": sink.url(f"/hook/{uuid.uuid4().hex[:8]}")})
    )
    _, other_app = await herald.create_app()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.status.GetMessage(status_service_pb2.GetMessageRequest(message_id=message_id), metadata=other_app)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("message_id", "code"),
    [("msg_01NOSUCHMESSAGE0000000000", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)],
)
async def test_unknown_or_missing_message_id(herald: Herald, message_id: str, code: grpc.StatusCode) -> None:
    _, app = await herald.create_app()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.status.GetMessage(status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app)
    assert err.value.code() == code


async def test_status_needs_an_app_key(herald: Herald) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.status.GetMessage(status_service_pb2.GetMessageRequest(message_id="msg_x"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
