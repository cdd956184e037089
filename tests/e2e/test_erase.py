"""A user erased from the directory (a privacy request) is forgotten by every service: no RPC returns their
addresses or the content sent to them any more."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import inbox_service_pb2 as inbox
from herald.v1 import message_service_pb2 as msg
from herald.v1 import topic_service_pb2 as topics

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, all_final, rpc_error
from tests.helpers.status_events import publish, status_event
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def test_after_delete_user_no_rpc_returns_their_addresses_or_content(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    mesh, herald = shared_mesh
    user_id = f"erase-{uuid.uuid4().hex[:8]}"
    secret = f"pin{uuid.uuid4().hex[:10]}"
    url = sink.url(f"/erase/{user_id}")
    _, app = await herald.create_app(("webhook", "inbox"))
    template = await herald.create_template({"webhook": f'{{"code": "{secret}"}}', "inbox": f"Your code is {secret}"})
    await herald.directory.UpsertUser(
        directory.UpsertUserRequest(user=directory.User(user_id=user_id, addresses={"webhook": url})),
        metadata=herald.admin,
    )
    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)])
    )
    sent = await herald.wait_message(app, message_id, lambda m: all_final(m, 2))
    assert {d.user_id for d in sent.deliveries} == {user_id} and any(secret in d.content for d in sent.deliveries)
    assert (await herald.inbox.Sync(inbox.SyncRequest(user_id=user_id), metadata=app)).items
    topic_key = f"erase-{uuid.uuid4().hex[:6]}"
    await herald.topics.CreateTopic(topics.CreateTopicRequest(topic=topics.Topic(topic_key=topic_key)), metadata=app)

    async def subscribing() -> AsyncIterator[topics.AddSubscribersRequest]:
        yield topics.AddSubscribersRequest(topic_key=topic_key, user_ids=[user_id, "someone-else"])

    await herald.topics.AddSubscribers(subscribing(), metadata=app)

    await herald.directory.DeleteUser(directory.DeleteUserRequest(user_id=user_id), metadata=herald.admin)

    error = await rpc_error(herald.directory.GetUser(directory.GetUserRequest(user_id=user_id), metadata=herald.admin))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    async def shown() -> list[str]:
        """Everything the RPCs still say that is the user's: their id, their address, what they were sent."""
        found: list[str] = []
        message = await herald.status.GetMessage(
            status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app
        )
        found += [str(d) for d in message.deliveries if user_id in str(d) or secret in str(d) or url in str(d)]
        listed = await herald.status.ListDeliveries(
            status_service_pb2.ListDeliveriesRequest(user_id=user_id), metadata=app
        )
        found += [str(d) for d in listed.deliveries]
        searched = await herald.status.SearchDeliveries(
            status_service_pb2.SearchDeliveriesRequest(query=secret), metadata=app
        )
        found += [str(d) for d in searched.deliveries]
        synced = await herald.inbox.Sync(inbox.SyncRequest(user_id=user_id), metadata=app)
        found += [str(i) for i in synced.items]
        subscribers = await herald.topics.ListSubscribers(
            topics.ListSubscribersRequest(topic_key=topic_key), metadata=app
        )
        found += [u for u in subscribers.user_ids if u == user_id]
        start = datetime.now(UTC) - timedelta(hours=1)
        export = status_service_pb2.ExportEventsRequest(format=status_service_pb2.EXPORT_FORMAT_CSV)
        export.start_time.FromDatetime(start)
        export.end_time.FromDatetime(start + timedelta(hours=2))
        async for chunk in herald.status.ExportEvents(export, metadata=app):
            text = chunk.data.decode(errors="replace")
            found += [line for line in text.splitlines() if user_id in line or secret in line]
        return found

    async with asyncio.timeout(30):
        while left := await shown():
            await asyncio.sleep(0.2)
    assert not left
    after = await herald.status.GetMessage(status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app)
    assert len(after.deliveries) == 2 and {d.state for d in after.deliveries} <= {
        S.DELIVERY_STATE_SENT,
        S.DELIVERY_STATE_DELIVERED,
    }, "what happened stays; whom it happened to does not"

    # A delivery still in flight at the erasure reports later, naming the user and what was sent: recorded
    # without them.
    [hook] = [d for d in after.deliveries if d.channel == "webhook"]
    late = status_event(
        hook.delivery_id, S.DELIVERY_STATE_DELIVERED, message_id=message_id, user_id=user_id, content=secret
    )
    await publish(mesh, late)
    await herald.wait_message(
        app,
        message_id,
        lambda m: any(d.state == S.DELIVERY_STATE_DELIVERED for d in m.deliveries if d.delivery_id == hook.delivery_id),
    )
    assert await shown() == []
