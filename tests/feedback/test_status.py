"""StatusService: an app sees only its own messages."""

import uuid

import grpc
import pytest
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


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


async def test_one_users_deliveries_are_listed_newest_first_page_by_page(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"n": "{{ n }}"}'})
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    recipient = msg.Recipient(user_id=user_id, addresses={"webhook": sink.url(f"/list/{user_id}")})
    sent = []
    for n in range(5):
        request = msg.SendRequest(template_id=template, recipients=[recipient], variables={"n": str(n)})
        message_id = await herald.send(app, request)
        await herald.wait_message(app, message_id, all_final)
        sent.append(message_id)
    someone_else = msg.Recipient(user_id="another-user", addresses={"webhook": sink.url("/list/other")})
    await herald.send(app, msg.SendRequest(template_id=template, recipients=[someone_else], variables={"n": "x"}))

    listed: list[status_service_pb2.Delivery] = []
    token = ""
    while True:
        page = await herald.status.ListDeliveries(
            status_service_pb2.ListDeliveriesRequest(user_id=user_id, page_size=2, page_token=token), metadata=app
        )
        assert len(page.deliveries) <= 2
        listed.extend(page.deliveries)
        token = page.next_page_token
        if not token:
            break
    assert [d.message_id for d in listed] == sent[::-1]
    assert all(d.user_id == user_id and d.history for d in listed)
    assert [h.state for h in listed[0].history][-1] == S.DELIVERY_STATE_SENT

    _, other_app = await herald.create_app()
    theirs = await herald.status.ListDeliveries(
        status_service_pb2.ListDeliveriesRequest(user_id=user_id), metadata=other_app
    )
    assert list(theirs.deliveries) == []
    failed = await herald.status.ListDeliveries(
        status_service_pb2.ListDeliveriesRequest(user_id=user_id, state=S.DELIVERY_STATE_FAILED), metadata=app
    )
    assert list(failed.deliveries) == []
    error = await rpc_error(
        herald.status.ListDeliveries(
            status_service_pb2.ListDeliveriesRequest(user_id=user_id, page_token="not-a-token"), metadata=app
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in bad_fields(error)
